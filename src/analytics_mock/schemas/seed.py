"""Shapes shared by the seed file, the users file and `/_mock/state`: objects and accounts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from analytics_mock.schemas.email_settings import (
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
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^:\s\x00-\x1f\x7f]+$")
]

InstanceId = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class SeedSetting(BaseModel):
    """One settings object; members left out take the default object's values."""

    model_config = ConfigDict(extra="forbid")

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
