"""Accounts: the built-in `system` user, the operator's users file, and unlocking."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from analytics_mock.config_files import ConfigFileError, load_config_file
from analytics_mock.db.models import UserRow
from analytics_mock.db.repositories import SessionRepository, UserRepository
from analytics_mock.passwords import hash_password, is_password_hash, verify_password
from analytics_mock.schemas.seed import Permission, UserName, reject_duplicates
from analytics_mock.services.auth import SYSTEM_USER


class UserSpec(BaseModel):
    """One account as the users file gives it: a plaintext `password` or a `passwordHash`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: UserName
    password: str | None = Field(default=None, min_length=1, repr=False)
    password_hash: str | None = Field(default=None, alias="passwordHash", repr=False)
    permissions: list[Permission] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_password(self) -> UserSpec:
        if (self.password is None) == (self.password_hash is None):
            raise ValueError("give exactly one of password and passwordHash")
        if self.password_hash is not None and not is_password_hash(self.password_hash):
            raise ValueError(
                "passwordHash is not a pbkdf2_sha256, sha512_crypt or sha256_crypt hash"
            )
        return self


class UsersFile(BaseModel):
    """The users file: `{"users": [...]}` in JSON or YAML."""

    model_config = ConfigDict(extra="forbid")

    users: list[UserSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> UsersFile:
        reject_duplicates((user.name for user in self.users), "user names")
        return self


class UsersFileError(ConfigFileError):
    """The users file cannot be read or does not validate; the text is one line."""


# The vendor's documented default account.
BUILT_IN_SYSTEM = UserSpec(
    name=SYSTEM_USER,
    password="manager",  # noqa: S106
    permissions=["Admin", "UserManagement"],
)


def load_users_file(path: Path) -> list[UserSpec]:
    """Read and validate a users file; errors never echo a password."""
    return load_config_file(path, UsersFile, UsersFileError).users


def _stored_hash(spec: UserSpec, existing: UserRow | None) -> str:
    if spec.password_hash is not None:
        # Loaded from this very hash before: the stored one verifies the same password, and
        # may be its upgrade to the default scheme at a login since.
        if existing is not None and existing.source_hash == spec.password_hash:
            return existing.password_hash
        return spec.password_hash
    assert spec.password is not None
    # Keep a hash that still verifies, so a restart does not invalidate every process's cache.
    if existing is not None and verify_password(spec.password, existing.password_hash):
        return existing.password_hash
    return hash_password(spec.password)


def sync_users(session: Session, specs: list[UserSpec]) -> None:
    """Make the accounts those of the users file plus `system`; lock state survives restarts."""
    wanted = {spec.name: spec for spec in [BUILT_IN_SYSTEM, *specs]}
    repo = UserRepository(session)
    repo.delete_except(set(wanted))
    for spec in wanted.values():
        row = repo.get(spec.name)
        password_hash = _stored_hash(spec, row)
        permissions = ",".join(sorted(set(spec.permissions)))
        if row is None:
            repo.add(
                UserRow(
                    name=spec.name,
                    password_hash=password_hash,
                    source_hash=spec.password_hash,
                    permissions=permissions,
                    failed_logins=0,
                    locked=False,
                )
            )
        else:
            if row.password_hash != password_hash:  # a new password: old tokens stop at once
                SessionRepository(session).end_for(spec.name)
            # An import of an exported upgraded hash keeps the file's hash it came from.
            if row.password_hash != password_hash or row.source_hash is None:
                row.source_hash = spec.password_hash
            row.password_hash = password_hash
            row.permissions = permissions


def unlock_user(session: Session, name: str) -> bool:
    """Unlock an account; false when there is no such account."""
    return UserRepository(session).unlock(name)
