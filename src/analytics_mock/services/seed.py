"""The seed: settings objects and users a store starts from, and returns to on reset.

The same shapes serve the `--seed-file` (JSON or YAML) and the state that `/_mock/state` exports
and imports. Passwords are never in clear on export: SMTP passwords travel as
`passwordEncrypted` (the stored ciphertext, readable with the same secret key), account passwords
as `passwordHash`. A seed may give a plaintext instead (`password`: Base64 for SMTP, as in the
API; `password`: plain text for an account, hashed when loaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.config import JsonDict

from analytics_mock.config_files import ConfigFileError, load_config_file
from analytics_mock.crypto import SecretBox
from analytics_mock.db.models import EmailSettingRow
from analytics_mock.db.repositories import SettingRecord
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
from analytics_mock.services.email_settings import default_setting, to_public
from analytics_mock.services.users import UserSpec
from analytics_mock.validation import decode_base64_password

InstanceId = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")
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
    properties["instanceID"]["pattern"] = "^[^\\x00-\\x1f\\x7f]+(?![\\s\\S])"
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
        if self.password is not None:
            decoded = decode_base64_password(self.password)
            if decoded is None or not 1 <= len(decoded) <= 255:
                raise ValueError("password must be Base64 (standard, padded) of 1 to 255 bytes")
        return self

    def to_row(self, box: SecretBox) -> EmailSettingRow:
        """The row to store, the password encrypted under `box`."""
        encrypted: bytes | None = None
        if self.password is not None:
            decoded = decode_base64_password(self.password)
            assert decoded is not None
            encrypted = box.encrypt(decoded)
        elif self.passwordEncrypted is not None:
            encrypted = self.passwordEncrypted.encode()
            box.decrypt(encrypted)  # refuse a ciphertext this server could never use
        assert self.hostname is not None and self.portNumber is not None
        assert self.secureConnection is not None and self.senderAddress is not None
        return EmailSettingRow(
            instance_id=self.instanceID,
            hostname=self.hostname,
            port_number=self.portNumber,
            secure_connection=self.secureConnection,
            authentication_enabled=bool(self.authenticationEnabled),
            user_id=self.userId,
            password_encrypted=encrypted,
            sender_address=self.senderAddress,
        )

    @classmethod
    def from_row(cls, row: SettingRecord) -> dict[str, Any]:
        """The exported form of a stored object: the password only as its ciphertext."""
        encrypted = row.password_encrypted.decode() if row.password_encrypted else None
        return {**to_public(row), "passwordEncrypted": encrypted}


def check_unique_instance_ids(settings: list[SeedSetting]) -> None:
    """Refuse two objects with one instanceID."""
    ids = [setting.instanceID for setting in settings]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate instanceID: {', '.join(duplicates)}")


class Seed(BaseModel):
    """A seed file: `{"settings": [...], "users": [...]}`, both optional."""

    model_config = ConfigDict(extra="forbid")

    settings: list[SeedSetting] = Field(default_factory=list)
    users: list[UserSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Seed:
        check_unique_instance_ids(self.settings)
        names = [user.name for user in self.users]
        if len(names) != len(set(names)):
            raise ValueError("duplicate user names")
        return self

    def setting_rows(self, box: SecretBox) -> list[EmailSettingRow]:
        """The objects a reset restores: the seed's, or the default object."""
        if not self.settings:
            return [default_setting()]
        return [setting.to_row(box) for setting in self.settings]


class SeedFileError(ConfigFileError):
    """The seed file cannot be read or does not validate; the text is one line."""


def load_seed_file(path: Path) -> Seed:
    """Read and validate a seed file."""
    return load_config_file(path, Seed, SeedFileError)
