"""The seed: settings objects and users a store starts from, and returns to on reset.

The same shapes serve the `--seed-file` (JSON or YAML) and the state that `/_mock/state` exports
and imports. Passwords are never in clear on export: SMTP passwords travel as
`passwordEncrypted` (the stored ciphertext, readable with the same secret key), account passwords
as `passwordHash`. A seed may give a plaintext instead (`password`: Base64 for SMTP, as in the
API; `password`: plain text for an account, hashed when loaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from analytics_mock.config_files import ConfigFileError, load_config_file
from analytics_mock.crypto import SecretBox
from analytics_mock.db.models import EmailSettingRow
from analytics_mock.db.repositories import SettingRecord
from analytics_mock.schemas.seed import SeedSetting, check_unique
from analytics_mock.services.email_settings import default_setting, to_public
from analytics_mock.services.users import UserSpec
from analytics_mock.validation import smtp_password


def setting_row(setting: SeedSetting, box: SecretBox) -> EmailSettingRow:
    """The row to store, the password encrypted under `box`."""
    encrypted: bytes | None = None
    if setting.password is not None:
        decoded = smtp_password(setting.password)
        assert decoded is not None
        encrypted = box.encrypt(decoded)
    elif setting.passwordEncrypted is not None:
        encrypted = setting.passwordEncrypted.encode()
        box.decrypt(encrypted)  # refuse a ciphertext this server could never use
    assert setting.hostname is not None and setting.portNumber is not None
    assert setting.secureConnection is not None and setting.senderAddress is not None
    return EmailSettingRow(
        instance_id=setting.instanceID,
        hostname=setting.hostname,
        port_number=setting.portNumber,
        secure_connection=setting.secureConnection,
        authentication_enabled=bool(setting.authenticationEnabled),
        user_id=setting.userId,
        password_encrypted=encrypted,
        sender_address=setting.senderAddress,
    )


def exported_setting(row: SettingRecord) -> dict[str, Any]:
    """The exported form of a stored object: the password only as its ciphertext."""
    encrypted = row.password_encrypted.decode() if row.password_encrypted else None
    return {**to_public(row), "passwordEncrypted": encrypted}


class Seed(BaseModel):
    """A seed file: `{"settings": [...], "users": [...]}`, both optional."""

    model_config = ConfigDict(extra="forbid")

    settings: list[SeedSetting] = Field(default_factory=list)
    users: list[UserSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Seed:
        check_unique(self.settings, (user.name for user in self.users))
        return self

    def setting_rows(self, box: SecretBox) -> list[EmailSettingRow]:
        """The objects a reset restores: the seed's, or the default object."""
        if not self.settings:
            return [default_setting()]
        return [setting_row(setting, box) for setting in self.settings]


class SeedFileError(ConfigFileError):
    """The seed file cannot be read or does not validate; the text is one line."""


def load_seed_file(path: Path) -> Seed:
    """Read and validate a seed file."""
    return load_config_file(path, Seed, SeedFileError)
