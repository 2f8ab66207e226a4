"""Reversible encryption of the stored SMTP password, which test mails must send again."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from analytics_mock.settings import Settings


class SecretBox:
    """Encrypts and decrypts small secrets with Fernet (AES-128-CBC + HMAC-SHA256)."""

    def __init__(self, key_material: bytes) -> None:
        # Any operator-chosen string becomes a valid Fernet key through SHA-256.
        derived = hashlib.sha256(key_material).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, plaintext: bytes) -> bytes:
        """Ciphertext of `plaintext`."""
        return self._fernet.encrypt(plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Plaintext of `ciphertext`; raises ValueError when the key does not fit."""
        try:
            return self._fernet.decrypt(ciphertext)
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
