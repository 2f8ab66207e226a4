"""Shapes shared by the seed file, the users file and `/_mock/state`: objects and accounts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.config import JsonDict

from analytics_mock.formats import CONTROL_CHARACTERS
from analytics_mock.schemas.email_settings import (
    PASSWORD_SCHEMA,
    USER_ID_SCHEMA,
    BooleanIn,
    HostnameIn,
    PortIn,
    SecureConnectionIn,
    SenderIn,
    UserIdIn,
)
from analytics_mock.validation import SMTP_PASSWORD_RULE, smtp_password

Permission = Literal["Admin", "Modify", "StorageOps", "UserManagement"]
UserName = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=rf"^[^:\s{CONTROL_CHARACTERS}]+$")
]

InstanceId = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=rf"^[^{CONTROL_CHARACTERS}]+$")
]

_NOT_NULL = ("hostname", "portNumber", "secureConnection", "authenticationEnabled", "senderAddress")


def _seed_setting_schema(schema: JsonDict) -> None:
    """The rules of `SeedSetting._consistent`, as its JSON schema."""
    properties = cast(dict[str, JsonDict], schema["properties"])
    for name in _NOT_NULL:
        branches = cast(list[JsonDict], properties[name].pop("anyOf"))
        kept = [branch for branch in branches if branch != {"type": "null"}]
        properties[name].update(kept[0] if len(kept) == 1 else cast(JsonDict, {"anyOf": kept}))
    # Python's `$` also matches before a final newline, which the server refuses.
    properties["instanceID"]["pattern"] = f"^[^{CONTROL_CHARACTERS}]+(?![\\s\\S])"
    properties["password"] = {"anyOf": [PASSWORD_SCHEMA, {"type": "null"}], "default": None}
    properties["passwordEncrypted"]["description"] = (
        "The stored ciphertext that GET /_mock/state exports, readable with the same secret key."
    )
    schema["allOf"] = [
        {
            "if": {
                "properties": {"authenticationEnabled": {"enum": [True, "true"]}},
                "required": ["authenticationEnabled"],
            },
            "then": {"properties": {"userId": USER_ID_SCHEMA}, "required": ["userId"]},
        },
        {
            "not": {
                "properties": {
                    "password": {"type": "string"},
                    "passwordEncrypted": {"type": "string"},
                },
                "required": ["password", "passwordEncrypted"],
            }
        },
    ]


class SeedSetting(BaseModel):
    """One settings object; members left out take the default object's values."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_seed_setting_schema)

    instanceID: InstanceId  # noqa: N815 - the vendor's member names
    hostname: HostnameIn = "localhost"
    portNumber: PortIn = 25  # noqa: N815
    secureConnection: SecureConnectionIn = "Plain"  # noqa: N815
    authenticationEnabled: BooleanIn = False  # noqa: N815
    userId: UserIdIn = None  # noqa: N815
    senderAddress: SenderIn = "analytics@localhost"  # noqa: N815
    password: str | None = Field(default=None, repr=False)
    passwordEncrypted: str | None = Field(default=None, repr=False)  # noqa: N815

    @model_validator(mode="after")
    def _consistent(self) -> SeedSetting:
        for name in ("hostname", "portNumber", "secureConnection", "authenticationEnabled"):
            if getattr(self, name) is None:
                raise ValueError(f"{name} must not be null")
        if self.senderAddress is None:
            raise ValueError("senderAddress must not be null")
        if self.authenticationEnabled and self.userId is None:
            raise ValueError("userId is required when authenticationEnabled is true")
        if self.password is not None and self.passwordEncrypted is not None:
            raise ValueError("give at most one of password and passwordEncrypted")
        if self.password is not None and smtp_password(self.password) is None:
            raise ValueError(f"password {SMTP_PASSWORD_RULE}")
        return self


def reject_duplicates(values: Iterable[str], what: str) -> None:
    """Refuse a list that names one thing twice: `duplicate <what>: a, b`."""
    seen: set[str] = set()
    twice: set[str] = set()
    for value in values:
        (twice if value in seen else seen).add(value)
    if twice:
        raise ValueError(f"duplicate {what}: {', '.join(sorted(twice))}")


def check_unique(settings: Iterable[SeedSetting], user_names: Iterable[str]) -> None:
    """Refuse two objects with one instanceID, or two accounts with one name."""
    reject_duplicates((setting.instanceID for setting in settings), "instanceID")
    reject_duplicates(user_names, "user names")
