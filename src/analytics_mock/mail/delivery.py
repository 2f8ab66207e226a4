"""Deliver the `sendTestMail` message over SMTP and report what happened in one line."""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import os
import re
import socket
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from enum import StrEnum, auto
from typing import TYPE_CHECKING, Literal, get_args

from analytics_mock.mail.message import build_test_message, endpoint

# aiosmtplib is imported by the functions that talk SMTP: only sendTestMail needs it, and
# every server start would otherwise pay for it.
if TYPE_CHECKING:
    import aiosmtplib

logger = logging.getLogger("analytics_mock.mail")

SecureConnection = Literal["Plain", "STARTTLS", "TLS"]


@dataclass(frozen=True)
class SmtpTarget:
    """Where and as whom to send: the email server settings of the API."""

    hostname: str
    port: int
    security: SecureConnection
    sender: str
    username: str | None  # None when authentication is disabled
    # Raw bytes, sent byte for byte: no UTF-8/latin-1 guessing can alter them.
    password: bytes | None = field(repr=False)


@dataclass(frozen=True)
class DeliveryOptions:
    """Bounds and TLS trust of one delivery attempt."""

    timeout: float = 10.0  # the whole attempt, DNS included
    connect_timeout: float = 10.0  # TCP connect + implicit TLS handshake + greeting
    verify_tls: bool = True  # certificate chain and host name, against the system store
    ca_file: str | None = None  # extra CA bundle, trusted in addition to the system store


class FailureKind(StrEnum):
    """Why a delivery failed."""

    CONNECTION_REFUSED = auto()  # no TCP connection: refused (or network/host unreachable)
    DNS_FAILURE = auto()
    TIMEOUT = auto()
    TLS_FAILED = auto()  # handshake, certificate, CA file, or STARTTLS answered with an error
    STARTTLS_NOT_OFFERED = auto()
    AUTH_NOT_SUPPORTED = auto()  # no AUTH on this connection, or no mechanism we speak
    AUTH_REJECTED = auto()
    SENDER_REFUSED = auto()
    RECIPIENT_REFUSED = auto()
    DATA_REFUSED = auto()
    CONNECTION_LOST = auto()
    SMTP_ERROR = auto()


@dataclass(frozen=True)
class DeliveryOutcome:
    """The result of one attempt; `detail` is one line and never contains the password."""

    delivered: bool
    failure: FailureKind | None
    detail: str


class _DeliveryError(Exception):
    """A failure detected by our own checks rather than raised by aiosmtplib."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


async def deliver_test_mail(
    target: SmtpTarget,
    recipients: Sequence[str],
    options: DeliveryOptions,
    *,
    message: EmailMessage | None = None,
) -> DeliveryOutcome:
    """Send one test mail to all `recipients` in one SMTP transaction (ValueError on bad input).

    `message` is the one `build_test_message` makes for this target unless the caller gives it.
    """
    import aiosmtplib  # noqa: PLC0415

    if target.security not in get_args(SecureConnection):
        raise ValueError(f"unknown secureConnection: {target.security!r}")
    if message is None:
        message = build_test_message(
            target.sender,
            recipients,
            hostname=target.hostname,
            port=target.port,
            security=target.security,
        )
    where = endpoint(target.hostname, target.port)
    logger.debug(
        "sending test mail via %s (%s), authentication %s, %d recipient(s)",
        where,
        target.security,
        "as " + repr(target.username) if target.username is not None else "disabled",
        len(recipients),
    )
    client = aiosmtplib.SMTP(
        hostname=target.hostname,
        port=target.port,
        timeout=options.timeout,
        local_hostname=_local_hostname(),
        use_tls=target.security == "TLS",
        # Never aiosmtplib's opportunistic STARTTLS: Plain means clear text, and
        # STARTTLS is done explicitly below so that its absence is a failure.
        start_tls=False,
    )
    progress = _Progress()
    deadline = asyncio.get_running_loop().time() + options.timeout
    failure: FailureKind | None = None
    try:
        try:
            async with asyncio.timeout_at(deadline):
                detail = await _converse(
                    client,
                    target,
                    recipients=recipients,
                    message=message,
                    options=options,
                    progress=progress,
                )
        except (_DeliveryError, aiosmtplib.SMTPException, OSError) as exc:
            failure, detail = _classify(exc, progress.stage, target, options)
        await _quit_politely(client, deadline)
    finally:
        client.close()

    outcome = DeliveryOutcome(
        delivered=failure is None, failure=failure, detail=_scrub(detail, _secrets(target))
    )
    if failure is None:
        logger.info("test mail delivered: %s", outcome.detail)
    else:
        logger.info("test mail failed (%s): %s", failure, outcome.detail)
    return outcome


@dataclass
class _Progress:
    """How far the dialogue got, for the failure detail."""

    stage: str = "connect"


def _local_hostname() -> str:
    """The name for EHLO, without the DNS lookup of aiosmtplib's default (socket.getfqdn)."""
    name = socket.gethostname()
    return name if re.fullmatch(r"[A-Za-z0-9.-]+", name) else "localhost"


async def _converse(
    client: aiosmtplib.SMTP,
    target: SmtpTarget,
    *,
    recipients: Sequence[str],
    message: EmailMessage,
    options: DeliveryOptions,
    progress: _Progress,
) -> str:
    """The SMTP dialogue; returns the success detail or raises."""
    import aiosmtplib  # noqa: PLC0415

    where = endpoint(target.hostname, target.port)
    tls_context = None
    if target.security != "Plain":
        progress.stage = "TLS setup"
        tls_context = await _tls_context(options)
    progress.stage = "connect"
    await client.connect(timeout=options.connect_timeout, tls_context=tls_context)

    if target.security == "STARTTLS":
        progress.stage = "EHLO"
        await client.ehlo()
        if not client.supports_extension("starttls"):
            raise _DeliveryError(
                FailureKind.STARTTLS_NOT_OFFERED,
                f"server {where} does not offer STARTTLS; not continuing without TLS",
            )
        progress.stage = "STARTTLS"
        await client.starttls()

    if target.username is not None:
        progress.stage = "EHLO"
        await client.ehlo()  # after STARTTLS, servers often announce AUTH only now
        if not client.supports_extension("auth"):
            hint = " (it may require TLS)" if target.security == "Plain" else ""
            raise _DeliveryError(
                FailureKind.AUTH_NOT_SUPPORTED,
                f"server {where} does not offer AUTH on this connection{hint}",
            )
        if not client.supported_auth_methods:
            offered = _excerpt(client.esmtp_extensions.get("auth", ""), target)
            raise _DeliveryError(
                FailureKind.AUTH_NOT_SUPPORTED,
                f"server {where} offers only AUTH {offered}; PLAIN, LOGIN or CRAM-MD5 needed",
            )
        progress.stage = "AUTH"
        # Raw bytes on the wire, so the server sees exactly the stored password.
        await client.login(target.username, target.password or b"")

    progress.stage = "MAIL FROM"
    await client.mail(target.sender)
    progress.stage = "RCPT TO"
    refused: list[aiosmtplib.SMTPRecipientRefused] = []
    for recipient in recipients:
        try:
            await client.rcpt(recipient)
        except aiosmtplib.SMTPRecipientRefused as exc:
            refused.append(exc)
    if refused:
        # One refusal cancels the whole test: no DATA to the accepted subset. The
        # QUIT that follows discards the open transaction, so no RSET is needed.
        label = "recipient refused" if len(refused) == 1 else "recipients refused"
        reasons = "; ".join(
            f"<{exc.recipient}> {exc.code} {_excerpt(exc.message, target)}" for exc in refused
        )
        raise _DeliveryError(FailureKind.RECIPIENT_REFUSED, f"{label}: {reasons}")

    progress.stage = "DATA"
    reply = await client.data(message.as_bytes())
    count = len(recipients)
    return (
        f"delivered to {count} recipient{'s' if count != 1 else ''} via {where} "
        f"({target.security}); server replied {reply.code} {_excerpt(reply.message, target)}"
    )


async def _quit_politely(client: aiosmtplib.SMTP, deadline: float) -> None:
    """Say QUIT if the connection is still up; the outcome is already decided."""
    import aiosmtplib  # noqa: PLC0415

    if not client.is_connected:
        return
    try:
        async with asyncio.timeout_at(deadline):
            await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        pass


# One flat decision table reads better than a split one, hence the many returns.
def _classify(  # noqa: PLR0911, PLR0912
    exc: Exception, stage: str, target: SmtpTarget, options: DeliveryOptions
) -> tuple[FailureKind, str]:
    """Map an exception from the dialogue to a FailureKind and its (unscrubbed) detail."""
    import aiosmtplib  # noqa: PLC0415

    if isinstance(exc, _DeliveryError):
        return exc.kind, exc.detail
    where = endpoint(target.hostname, target.port)
    chain = list(_causes(exc))
    root = chain[-1]
    if any(isinstance(e, TimeoutError) for e in chain):
        return FailureKind.TIMEOUT, f"timed out talking to {where} during {stage}"
    if any(isinstance(e, socket.gaierror) for e in chain):
        return FailureKind.DNS_FAILURE, f"cannot resolve {target.hostname!r}: {root}"
    if stage == "TLS setup":
        return FailureKind.TLS_FAILED, f"cannot load CA file {options.ca_file!r}: {exc}"
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return FailureKind.TLS_FAILED, f"TLS with {where} failed during {stage}: {root}"
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return (
            FailureKind.AUTH_REJECTED,
            f"authentication as {target.username!r} rejected: "
            f"{exc.code} {_excerpt(exc.message, target)}",
        )
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return (
            FailureKind.SENDER_REFUSED,
            f"sender refused: <{exc.sender}> {exc.code} {_excerpt(exc.message, target)}",
        )
    if isinstance(exc, aiosmtplib.SMTPDataError):
        reply = f"{exc.code} {_excerpt(exc.message, target)}"
        return FailureKind.DATA_REFUSED, f"message refused: {reply}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        kind = FailureKind.TLS_FAILED if stage == "STARTTLS" else FailureKind.SMTP_ERROR
        # aiosmtplib reports an unparsable reply with the made-up code -1: not an SMTP
        # server, and what it is (its banner) is none of the caller's business.
        if exc.code < 0:
            return kind, f"{where} did not answer as an SMTP server during {stage}"
        return kind, f"{where} answered {exc.code} {_excerpt(exc.message, target)} during {stage}"
    if isinstance(root, ConnectionRefusedError):
        return FailureKind.CONNECTION_REFUSED, f"connection to {where} refused"
    if stage == "connect" and isinstance(root, OSError) and not isinstance(root, ConnectionError):
        # No byte exchanged yet: unreachable, or asyncio's "Multiple exceptions"
        # when every address of the host (::1, 127.0.0.1) refused.
        return FailureKind.CONNECTION_REFUSED, f"cannot connect to {where}: {root}"
    if isinstance(root, ConnectionError):
        return FailureKind.CONNECTION_LOST, f"connection to {where} lost during {stage}: {exc}"
    return FailureKind.SMTP_ERROR, f"SMTP error with {where} during {stage}: {exc}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


async def _tls_context(options: DeliveryOptions) -> ssl.SSLContext:
    """The cached client context for `options`, built off the event loop."""
    return await asyncio.to_thread(_tls_context_for, options.verify_tls, options.ca_file)


def _tls_context_for(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    # Keying on mtime and size picks up a CA bundle replaced in place.
    if not verify or ca_file is None:
        return _build_tls_context(verify, None, None)
    stat = os.stat(ca_file)
    return _build_tls_context(verify, ca_file, (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=16)
def _build_tls_context(
    verify: bool, ca_file: str | None, _version: tuple[int, int] | None
) -> ssl.SSLContext:
    # Loading the system trust store takes tens of milliseconds: hence the cache.
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _secrets(target: SmtpTarget) -> list[str]:
    """Every form in which the password could show up in text."""
    password = target.password
    if not password:
        return []
    plain_blob = b"\0" + (target.username or "").encode() + b"\0" + password
    return [
        password.decode("utf-8", "surrogateescape"),  # as aiosmtplib decodes server replies
        password.decode("utf-8", "backslashreplace"),  # as in a repr
        password.decode("latin-1"),
        base64.b64encode(password).decode("ascii"),  # AUTH LOGIN
        base64.b64encode(plain_blob).decode("ascii"),  # AUTH PLAIN
    ]


def _scrub(text: str, secrets: Sequence[str]) -> str:
    """`text` on one line of valid Unicode, with every secret replaced by `***`."""
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    for secret in ordered:
        text = text.replace(secret, "***")
    text = _one_line(text)
    # Again in normalised form, in case the line folding reassembled a secret.
    for secret in ordered:
        folded = _one_line(secret)
        if folded:
            text = text.replace(folded, "***")
    return text


# At most this much of what a server said is quoted, printable ASCII only: a test mail must
# not make the emulator a tool that reads any port's banner.
REPLY_EXCERPT = 120


def _excerpt(text: str, target: SmtpTarget) -> str:
    """A bounded, printable excerpt of a server's reply, with the password scrubbed first."""
    text = _scrub(text, _secrets(target))
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return text if len(text) <= REPLY_EXCERPT else text[:REPLY_EXCERPT] + "..."


def _one_line(text: str) -> str:
    # Server replies are decoded with surrogateescape: make them encodable again.
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text)
    return " ".join(text.split())
