"""Request and response bodies of the EmailServerSettings resource.

Input coercion follows the vendor's Java stack [pick]: strings take JSON strings only; booleans
take true/false or "true"/"false"; ints take JSON integers or strings of decimal digits.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from analytics_mock.formats import CONTROL_CHARACTER, CONTROL_CHARACTERS
from analytics_mock.validation import (
    HOST_PATTERN,
    MAIL_ADDRESS_PATTERN,
    PASSWORD_PATTERN,
    is_host,
    is_mail_address,
)

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
    elif isinstance(value, float) and value.is_integer():
        # 25.0 is the integer 25 to JSON Schema, and so to the published document.
        number = int(value)
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
        if CONTROL_CHARACTER.search(value):
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


_NULL = {"type": "null"}
# The string forms the coercion rules take: "true"/"false", and 1 to 10 decimal digits of a
# number from 1 to 65535 (leading zeros allowed).
_BOOLEAN_TEXT = {"type": "string", "enum": ["true", "false"]}
_PORT_TEXT = {
    "type": "string",
    "pattern": (
        "^(?=[0-9]{1,10}(?![\\s\\S]))0*"
        "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
        "(?![\\s\\S])"
    ),
}
# 1 to 255 bytes of UTF-8 without control characters. A schema counts characters, not bytes:
# any 63 characters fit, and so do 255 of printable ASCII.
USER_ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": f"^[^{CONTROL_CHARACTERS}]*(?![\\s\\S])",
    "anyOf": [
        {"type": "string", "maxLength": 63},
        {"type": "string", "pattern": "^[\\x20-\\x7e]*(?![\\s\\S])"},
    ],
    "description": "1 to 255 bytes of UTF-8, no control characters.",
}
HOST_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": HOST_PATTERN,
    "description": "An IPv4 or IPv6 address (no brackets, no zone) or a host name.",
}
MAIL_ADDRESS_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 3,
    "maxLength": 254,
    "pattern": MAIL_ADDRESS_PATTERN,
    "description": "An RFC 5321 mailbox, ASCII only.",
}
PASSWORD_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "byte",
    "minLength": 4,
    "maxLength": 340,
    "pattern": PASSWORD_PATTERN,
    "description": "Base64 (standard alphabet, padded) of 1 to 255 bytes.",
}


def _nullable(*schemas: dict[str, Any], description: str | None = None) -> WithJsonSchema:
    schema: dict[str, Any] = {"anyOf": [*schemas, _NULL]}
    if description:
        schema["description"] = description
    return WithJsonSchema(schema)


InstanceIdIn = Annotated[
    None,
    BeforeValidator(_instance_id),
    _nullable({"type": "string"}, {"type": "number"}, description="Ignored: the path names it."),
]
HostnameIn = Annotated[str | None, BeforeValidator(_hostname), _nullable(HOST_SCHEMA)]
BooleanIn = Annotated[
    bool | None, BeforeValidator(_boolean), _nullable({"type": "boolean"}, _BOOLEAN_TEXT)
]
UserIdIn = Annotated[
    str | None,
    BeforeValidator(_user_id),
    _nullable(
        USER_ID_SCHEMA,
        description="Required when the resulting authenticationEnabled is"
        " true and no userId is stored.",
    ),
]
# Read only when updatePassword is true (see the model's `if`); otherwise any value is ignored.
PasswordIn = Annotated[
    Any,
    WithJsonSchema(
        {
            "description": "Base64 (standard, padded) of 1 to 255 bytes; read only when"
            " updatePassword is true, otherwise ignored unseen."
        }
    ),
]
SenderIn = Annotated[str | None, BeforeValidator(_sender), _nullable(MAIL_ADDRESS_SCHEMA)]
SecureConnectionIn = Annotated[
    str | None,
    BeforeValidator(_secure_connection),
    _nullable({"type": "string", "enum": list(SECURE_CONNECTIONS)}),
]
PortIn = Annotated[
    int | None,
    BeforeValidator(_port),
    _nullable({"type": "integer", "minimum": 1, "maximum": 65535}, _PORT_TEXT),
]
# updatePassword true (or "true") needs a password, and then reads it.
_PASSWORD_RULE: dict[str, Any] = {
    "if": {
        "properties": {"updatePassword": {"enum": [True, "true"]}},
        "required": ["updatePassword"],
    },
    "then": {"properties": {"password": PASSWORD_SCHEMA}, "required": ["password"]},
}


class EmailSettingUpdate(BaseModel):
    """The PUT body: every member optional; omitted or null keeps the stored value."""

    model_config = ConfigDict(
        extra="forbid", title="EmailSettingUpdate", json_schema_extra=_PASSWORD_RULE
    )

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


def _not_null(schema: dict[str, Any]) -> None:
    """Drop the null branch of an optional member that is left out rather than sent as null."""
    branches = [branch for branch in schema.pop("anyOf", []) if branch.get("type") != "null"]
    schema.update(branches[0] if len(branches) == 1 else {"anyOf": branches})
    schema.pop("default", None)


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
    # Absent, never null, when nothing matches.
    pagination: Pagination | None = Field(default=None, json_schema_extra=_not_null)
    count: int


class ErrorBody(BaseModel):
    """The vendor's error envelope."""

    model_config = ConfigDict(title="Error")

    errorSource: str  # noqa: N815
    message: str
    messageID: str  # noqa: N815
    application: Literal["Analytics"]
