"""HTTPS certificates: the operator's pair, or a self-signed one kept for clients to pin."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from analytics_mock.settings import Settings

# cryptography (~8 MB) is imported inside the functions that handle certificates, so that a
# server without HTTPS never loads it.
if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

if sys.platform != "win32":
    import fcntl

# Short enough for clients that refuse longer-lived server certificates (Apple's limit);
# an expired generated certificate is replaced at the next start.
_VALIDITY = datetime.timedelta(days=825)


class TlsError(Exception):
    """A one-line reason HTTPS cannot be served."""


@dataclass(frozen=True)
class TlsFiles:
    """The certificate and key HTTPS is served with."""

    certfile: Path
    keyfile: Path
    fingerprint: str  # SHA-256 of the certificate, as colon-separated hex pairs
    generated: bool


def check_options(settings: Settings) -> None:
    """Refuse certificate options that cannot be meant as given."""
    if (settings.certfile is None) != (settings.keyfile is None):
        raise TlsError(
            "give both --certfile and --keyfile, or neither for a self-signed certificate"
        )
    if settings.certfile is not None and settings.https_port is None:
        raise TlsError("--certfile and --keyfile need --https-port")
    if settings.https_port and settings.https_port == settings.port:
        raise TlsError("--https-port must differ from --port")


def tls_files(settings: Settings) -> TlsFiles | None:
    """The pair to serve HTTPS with (None when HTTPS is off), generated when none is given."""
    check_options(settings)
    if settings.https_port is None:
        return None
    if settings.certfile is not None and settings.keyfile is not None:
        return _checked(settings.certfile, settings.keyfile, generated=False)
    certfile, keyfile = default_paths(settings)
    try:
        _ensure_self_signed(certfile, keyfile)
    except OSError as exc:
        raise TlsError(
            f"cannot keep a self-signed certificate at {certfile}: {exc.strerror or exc}"
        ) from None
    return _checked(certfile, keyfile, generated=True)


def default_paths(settings: Settings) -> tuple[Path, Path]:
    """Where the self-signed pair lives: beside a SQLite file, else in the working directory."""
    url = make_url(settings.database_url_text)
    stem = Path("analytics-mock")
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        stem = Path(url.database)
    return stem.with_name(stem.name + ".tls.crt"), stem.with_name(stem.name + ".tls.key")


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as `AB:CD:...`, the way browsers and openssl show it."""
    return hashlib.sha256(der).digest().hex(":").upper()


def _checked(certfile: Path, keyfile: Path, *, generated: bool) -> TlsFiles:
    option = "the self-signed certificate" if generated else "--certfile/--keyfile"
    try:
        return _check_pair(certfile, keyfile, generated)
    except OSError as exc:
        raise TlsError(f"{option}: cannot read {exc.filename}: {exc.strerror}") from None
    except TlsError as exc:
        raise TlsError(f"{option}: {exc}") from None


def _check_pair(certfile: Path, keyfile: Path, generated: bool) -> TlsFiles:
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    try:
        certificate = x509.load_pem_x509_certificate(certfile.read_bytes())
    except ValueError:
        raise TlsError(f"{certfile} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(keyfile.read_bytes(), password=None)
    except TypeError:
        raise TlsError(f"{keyfile} is encrypted; give an unencrypted key") from None
    except ValueError:
        raise TlsError(f"{keyfile} holds no PEM private key") from None
    if _key_id(key.public_key()) != _key_id(certificate.public_key()):
        raise TlsError(f"the key in {keyfile} does not belong to the certificate in {certfile}")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        raise TlsError(f"OpenSSL refuses the pair: {exc.reason or exc}") from None
    der = certificate.public_bytes(serialization.Encoding.DER)
    return TlsFiles(certfile, keyfile, fingerprint(der), generated)


def _key_id(public_key: PublicKeyTypes) -> bytes:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _ensure_self_signed(certfile: Path, keyfile: Path) -> None:
    """Create the pair unless a usable one is there; several processes may start at once."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    keyfile.parent.mkdir(parents=True, exist_ok=True)
    with _locked(keyfile) as key_fd:
        if _usable(certfile) and os.fstat(key_fd).st_size > 0:
            return
        key = ec.generate_private_key(ec.SECP256R1())
        os.ftruncate(key_fd, 0)
        os.write(
            key_fd,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        os.fsync(key_fd)
        certificate = _self_signed(key)
        tmp = certfile.with_name(f".{certfile.name}.tmp")
        tmp.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        os.replace(tmp, certfile)


@contextmanager
def _locked(keyfile: Path) -> Iterator[int]:
    # The key file is its own lock: created 0600 before anything is in it, and whoever holds
    # the lock writes both files, so no process sees a certificate without its key.
    fd = os.open(keyfile, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform != "win32":  # Windows: no lock, so no two servers starting at once
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _usable(certfile: Path) -> bool:
    from cryptography import x509  # noqa: PLC0415

    try:
        certificate = x509.load_pem_x509_certificate(certfile.read_bytes())
    except (OSError, ValueError):
        return False
    return certificate.not_valid_after_utc > datetime.datetime.now(datetime.UTC)


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    names = ["localhost"]
    hostname = socket.gethostname()
    if hostname and hostname.isascii() and hostname != "localhost":
        names.append(hostname)
    now = datetime.datetime.now(datetime.UTC)
    # An end-entity certificate that is its own issuer: clients trust it as a CA file or pin
    # it, and strict verifiers (Python 3.13's default) accept it.
    return certificate(
        key.public_key(),
        key,
        subject="analytics-mock",
        issuer="analytics-mock",
        valid=(now - datetime.timedelta(days=1), now + _VALIDITY),
        names=[*names, "127.0.0.1", "::1"],
    )


def certificate(
    public_key: ec.EllipticCurvePublicKey,
    signing_key: ec.EllipticCurvePrivateKey,
    *,
    subject: str,
    issuer: str,
    valid: tuple[datetime.datetime, datetime.datetime],
    names: Sequence[str] = (),
    ca: bool = False,
    issuer_key: ec.EllipticCurvePublicKey | None = None,
) -> x509.Certificate:
    """A CA's certificate (`ca`), or a TLS server's for `names` (host names or IP addresses).

    `issuer_key`: the issuer's public key, when it is not the certificate's own.
    """
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def general_name(text: str) -> x509.GeneralName:
        try:
            return x509.IPAddress(ipaddress.ip_address(text))
        except ValueError:
            return x509.DNSName(text)

    issuer_id = x509.SubjectKeyIdentifier.from_public_key(issuer_key or public_key)
    usage = dict.fromkeys(
        ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement"), False
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
                **usage,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_id),
            critical=False,
        )
    )
    if names:
        alternative = x509.SubjectAlternativeName([general_name(n) for n in names])
        builder = builder.add_extension(alternative, critical=False)
    if not ca:
        usage_oids = [ExtendedKeyUsageOID.SERVER_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage_oids), critical=False)
    return builder.sign(signing_key, hashes.SHA256())
