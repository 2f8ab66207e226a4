"""Reversible encryption of the stored SMTP password, which test mails must send again."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from analytics_mock.settings import Settings

if TYPE_CHECKING:
    from cryptography.fernet import Fernet


class SecretBox:
    """Encrypts and decrypts small secrets with Fernet (AES-128-CBC + HMAC-SHA256)."""

    def __init__(self, key_material: bytes) -> None:
        # Any operator-chosen string becomes a valid Fernet key through SHA-256.
        self._key = base64.urlsafe_b64encode(hashlib.sha256(key_material).digest())
        self._fernet: Fernet | None = None

    def _box(self) -> Fernet:
        # Made at first use: a server that never stores an SMTP password never loads
        # cryptography (~7 MB). Two threads racing here build equal boxes; either one serves.
        if self._fernet is None:
            from cryptography.fernet import Fernet  # noqa: PLC0415

            self._fernet = Fernet(self._key)
        return self._fernet

    def encrypt(self, plaintext: bytes) -> bytes:
        """Ciphertext of `plaintext`."""
        return self._box().encrypt(plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Plaintext of `ciphertext`; raises ValueError when the key does not fit."""
        from cryptography.fernet import InvalidToken  # noqa: PLC0415 - as in _box

        try:
            return self._box().decrypt(ciphertext)
        except InvalidToken:
            raise ValueError("the stored SMTP password cannot be decrypted with this key") from None


def _read_or_create_key_file(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(base64.urlsafe_b64encode(secrets.token_bytes(32)))
            handle.flush()
            os.fsync(handle.fileno())
        # A hard link is atomic and refuses to replace, so two processes starting at once
        # end up sharing whichever key landed first.
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes().strip()


def secret_box_from_settings(settings: Settings) -> SecretBox:
    """The box for the configured key, or for the key file (created with mode 0600 if absent)."""
    if settings.secret_key is not None:
        return SecretBox(settings.secret_key.get_secret_value().encode())
    return SecretBox(_read_or_create_key_file(settings.key_file_path()))
