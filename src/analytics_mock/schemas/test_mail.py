"""Bodies of the sendTestMail action: the Action, its TestMail parameter, and the Job."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from analytics_mock.schemas.email_settings import (
    MAIL_ADDRESS_SCHEMA,
    EmailSetting,
    EmailSettingUpdate,
)
from analytics_mock.validation import is_mail_address

ACTION_NAME = "sendTestMail"
# [pick] A test mail is one SMTP transaction; this bounds how many RCPT commands it sends.
MAX_DESTINATIONS = 100


def _destinations(value: object) -> object:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_DESTINATIONS:
        raise PydanticCustomError(
            "member_invalid", f"must be a list of 1 to {MAX_DESTINATIONS} mail addresses"
        )
    for address in value:
        if not isinstance(address, str) or not is_mail_address(address):
            raise PydanticCustomError("member_invalid", "must hold valid mail addresses only")
    return value


def _optional_text(expected: str | None) -> Any:
    def check(value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str) or (expected is not None and value != expected):
            wanted = f'"{expected}"' if expected is not None else "a string"
            raise PydanticCustomError("member_invalid", f"must be {wanted}")
        return value

    return BeforeValidator(check)


def _single_parameter(value: object) -> object:
    if not isinstance(value, list) or len(value) != 1:
        raise PydanticCustomError("member_invalid", "must hold exactly one TestMail object")
    return value


def _or_null(schema: dict[str, Any]) -> WithJsonSchema:
    return WithJsonSchema({"anyOf": [schema, {"type": "null"}]})


class TestMailIn(BaseModel):
    """The TestMail a client sends: where to, and optionally settings to try instead."""

    __test__ = False  # not a pytest test class, whatever its name
    model_config = ConfigDict(extra="forbid")

    destinationAddresses: Annotated[  # noqa: N815 - the vendor's member names
        list[str],
        BeforeValidator(_destinations),
        WithJsonSchema(
            {
                "type": "array",
                "items": MAIL_ADDRESS_SCHEMA,
                "minItems": 1,
                "maxItems": MAX_DESTINATIONS,
            }
        ),
    ]
    emailSetting: EmailSettingUpdate | None = None  # noqa: N815


class SendTestMailActionIn(BaseModel):
    """The Action object as the prepare call returned it, its parameter filled in."""

    model_config = ConfigDict(extra="forbid")

    # As the prepare call returned them, or null or left out.
    name: Annotated[str | None, _optional_text(ACTION_NAME), _or_null({"const": ACTION_NAME})] = (
        None
    )
    href: Annotated[str | None, _optional_text(None), _or_null({"type": "string"})] = None
    method: Annotated[str | None, _optional_text("POST"), _or_null({"const": "POST"})] = None
    type: Annotated[
        str | None, _optional_text("application/json"), _or_null({"const": "application/json"})
    ] = None
    parameters: Annotated[
        list[TestMailIn],
        BeforeValidator(_single_parameter),
        Field(min_length=1, max_length=1),
    ]


class TestMailOut(BaseModel):
    """The TestMail the prepare call offers: no destinations yet, the stored settings."""

    __test__ = False
    model_config = ConfigDict(title="TestMail")

    destinationAddresses: list[str]  # noqa: N815
    emailSetting: EmailSetting  # noqa: N815


class SendTestMailAction(BaseModel):
    """The vendor's Action object for sendTestMail."""

    model_config = ConfigDict(title="SendTestMailAction")

    name: Literal["sendTestMail"]
    href: str
    method: Literal["POST"]
    type: Literal["application/json"]
    parameters: list[TestMailOut]


class TestMailResult(BaseModel):
    """One line of a Job's result: what happened to the test mail [pick]."""

    __test__ = False
    model_config = ConfigDict(title="TestMailResult")

    destinationAddresses: list[str]  # noqa: N815
    failureKind: str | None  # noqa: N815
    message: str


class Job(BaseModel):
    """The vendor's Job object, finished by the time it is returned."""

    model_config = ConfigDict(title="Job")

    instanceID: str  # noqa: N815
    created: str
    updated: str
    completed: str
    state: Literal["success", "failed"]
    affectedResource: list[str]  # noqa: N815
    result: list[TestMailResult]
