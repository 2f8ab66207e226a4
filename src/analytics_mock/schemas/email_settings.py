"""Request and response bodies of the EmailServerSettings resource.

Input coercion follows the vendor's Java stack [pick]: strings take JSON strings only; booleans
take true/false or "true"/"false"; ints take JSON integers or strings of decimal digits.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from analytics_mock.validation import is_host, is_mail_address

SecureConnection = Literal["TLS", "Plain", "STARTTLS"]
SECURE_CONNECTIONS: tuple[str, ...] = ("TLS", "Plain", "STARTTLS")


def _invalid(reason: str) -> PydanticCustomError:
    return PydanticCustomError("member_invalid", reason)


def _string(value: object) -> object:
    if value is None or isinstance(value, str):
        return value
    raise _invalid("must be a string")


def _boolean(value: object) -> object:
    if value is None or isinstance(value, bool):
        return value
    if value == "true":
        return True
    if value == "false":
        return False
    raise _invalid("must be true or false")


def _port(value: object) -> object:
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        number = int(value)
    if number is None or not 1 <= number <= 65535:
        raise _invalid("must be an integer from 1 to 65535")
    return number


def _hostname(value: object) -> object:
    value = _string(value)
    if isinstance(value, str) and not is_host(value):
        raise _invalid("must be an IP address or a host name of 1 to 255 characters")
    return value


def _user_id(value: object) -> object:
    value = _string(value)
    if isinstance(value, str):
        try:
            size = len(value.encode())
        except UnicodeEncodeError:
            raise _invalid("must be valid Unicode text") from None
        if not 1 <= size <= 255:
            raise _invalid("must be 1 to 255 bytes long")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            raise _invalid("must not contain control characters")
    return value


def _sender(value: object) -> object:
    value = _string(value)
    if isinstance(value, str) and not is_mail_address(value):
        raise _invalid("must be a valid mail address")
    return value


def _secure_connection(value: object) -> object:
    value = _string(value)
    if isinstance(value, str) and value not in SECURE_CONNECTIONS:
        raise _invalid("must be one of TLS, Plain, STARTTLS")
    return value


def _instance_id(value: object) -> object:
    # Ignored, as the path names the object; the vendor's own example sends a number here.
    if (
        value is None
        or isinstance(value, str | float)
        or (isinstance(value, int) and not isinstance(value, bool))
    ):
        return None
    raise _invalid("must be a string or a number")


_STRING_SCHEMA = {"type": "string"}

InstanceIdIn = Annotated[
    None,
    BeforeValidator(_instance_id),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number"}], "description": "Ignored."}),
]
HostnameIn = Annotated[
    str | None,
    BeforeValidator(_hostname),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 255}),
]
BooleanIn = Annotated[bool | None, BeforeValidator(_boolean), WithJsonSchema({"type": "boolean"})]
UserIdIn = Annotated[
    str | None,
    BeforeValidator(_user_id),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 255}),
]
PasswordIn = Annotated[
    Any,
    WithJsonSchema(
        {"type": "string", "format": "byte", "description": "Base64 of 1 to 255 bytes."}
    ),
]
SenderIn = Annotated[
    str | None,
    BeforeValidator(_sender),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 254}),
]
SecureConnectionIn = Annotated[
    str | None,
    BeforeValidator(_secure_connection),
    WithJsonSchema({"type": "string", "enum": list(SECURE_CONNECTIONS)}),
]
PortIn = Annotated[
    int | None,
    BeforeValidator(_port),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 65535}),
]


class EmailSettingUpdate(BaseModel):
    """The PUT body: every member optional; omitted or null keeps the stored value."""

    model_config = ConfigDict(extra="forbid", title="EmailSettingUpdate")

    instanceID: InstanceIdIn = None  # noqa: N815 - the vendor's member names
    hostname: HostnameIn = None
    authenticationEnabled: BooleanIn = None  # noqa: N815
    userId: UserIdIn = None  # noqa: N815
    updatePassword: BooleanIn = None  # noqa: N815
    # Validated only when updatePassword is true; otherwise ignored unseen, as the vendor does.
    password: PasswordIn = Field(default=None, repr=False)
    senderAddress: SenderIn = None  # noqa: N815
    secureConnection: SecureConnectionIn = None  # noqa: N815
    portNumber: PortIn = None  # noqa: N815


class EmailSetting(BaseModel):
    """The EmailSetting object as every response shows it: 7 members, never a password."""

    model_config = ConfigDict(title="EmailSetting")

    instanceID: str  # noqa: N815
    hostname: str
    authenticationEnabled: bool  # noqa: N815
    userId: str | None  # noqa: N815
    senderAddress: str  # noqa: N815
    secureConnection: SecureConnection  # noqa: N815
    portNumber: int  # noqa: N815


class Pagination(BaseModel):
    """Where the returned window sits in the matching objects."""

    page: int
    pageSize: int  # noqa: N815
    numPages: int  # noqa: N815
    totalCount: int  # noqa: N815


class EmailSettingCollection(BaseModel):
    """The vendor's Collections envelope; `pagination` only when something matches."""

    model_config = ConfigDict(title="EmailSettingCollection")

    data: list[EmailSetting]
    pagination: Pagination | None = Field(default=None, json_schema_extra={"nullable": False})
    count: int


class ErrorBody(BaseModel):
    """The vendor's error envelope."""

    model_config = ConfigDict(title="Error")

    errorSource: str  # noqa: N815
    message: str
    messageID: str  # noqa: N815
    application: Literal["Analytics"]
