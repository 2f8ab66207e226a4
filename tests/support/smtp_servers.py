"""Real SMTP servers on 127.0.0.1 for tests: aiosmtpd in a thread, raw sockets for misbehaviour.

Everything listens on an OS-assigned port (bind to port 0), never a guessed one.

    with start_smtp_server(security="STARTTLS", tls=tls_files, credentials=("bob", b"pw")) as s:
        ...  # send to s.host:s.port, then look at s.received[0].sender, .recipients, .login
"""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from analytics_mock.tls import certificate

LOCALHOST = "127.0.0.1"

Security = Literal["Plain", "STARTTLS", "TLS"]


# --- TLS material ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and a server certificate it signed, for 127.0.0.1 and localhost."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_tls_files(directory: Path, *, ca_name: str = "analytics-mock test CA") -> TlsFiles:
    """Generate a CA and a server certificate for 127.0.0.1/localhost into `directory`."""
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate(
        ca_key.public_key(), ca_key, subject=ca_name, issuer=ca_name, valid=validity, ca=True
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(
        key.public_key(),
        ca_key,
        subject="localhost",
        issuer=ca_name,
        valid=validity,
        names=["localhost", LOCALHOST],
        issuer_key=ca_key.public_key(),
    )

    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


# --- aiosmtpd servers -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    """One message as it arrived: envelope, bytes, and how the session was set up."""

    sender: str
    recipients: list[str]
    data: bytes
    login: bytes | None  # the authenticated user, None without AUTH
    tls: bool  # whether the session was encrypted when DATA arrived

    def message(self) -> EmailMessage:
        """The message parsed with the modern email API."""
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class RecordingHandler:
    """aiosmtpd handler that records every message and can refuse on demand."""

    def __init__(
        self,
        *,
        refuse_sender: bool = False,
        refuse_recipients: Sequence[str] = (),
        refuse_data: bool = False,
        data_delay: float = 0.0,
    ) -> None:
        self.refuse_sender = refuse_sender
        self.refuse_recipients = {r.lower() for r in refuse_recipients}
        self.refuse_data = refuse_data
        self.data_delay = data_delay
        self.received: list[ReceivedMail] = []
        self.transactions = 0  # MAIL FROM commands accepted

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if self.refuse_sender:
            return f"553 5.7.1 <{address}>: sender not allowed"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        self.transactions += 1
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self.refuse_recipients:
            return f"550 5.1.1 <{address}>: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.refuse_data:
            return "554 5.6.0 message content rejected"
        self.received.append(
            ReceivedMail(
                sender=envelope.mail_from,
                recipients=list(envelope.rcpt_tos),
                data=envelope.original_content,
                login=session.auth_data.login if session.authenticated else None,
                tls=server.transport.get_extra_info("ssl_object") is not None,
            )
        )
        return "250 2.0.0 OK queued as TEST"


@dataclass
class Authenticator:
    """Accepts one login/password pair (compared as bytes) and records every attempt."""

    login: bytes
    password: bytes
    echo_on_failure: Callable[[LoginPassword], bytes] | None = None  # the 535 reply
    attempts: list[tuple[str, bytes]] = field(default_factory=list)  # (mechanism, login)

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.attempts.append((mechanism, auth_data.login))
        if auth_data.login == self.login and auth_data.password == self.password:
            return AuthResult(success=True, auth_data=auth_data)
        message = self.echo_on_failure(auth_data) if self.echo_on_failure else None
        # aiosmtpd annotates the message as str, but pushes bytes as they are: the reply may
        # quote a password that is not valid in any one encoding.
        return AuthResult(success=False, handled=False, message=cast("str | None", message))


class _Controller(Controller):
    """aiosmtpd's Controller, listening on an OS-assigned port."""

    def _trigger_server(self) -> None:
        # start() primes the server by connecting to self.port, which is still 0 here.
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]  # unannotated in aiosmtpd


@dataclass
class SmtpServer:
    """A running server: where it listens and what it saw."""

    host: str
    port: int
    handler: RecordingHandler
    authenticator: Authenticator | None

    @property
    def received(self) -> list[ReceivedMail]:
        return self.handler.received


@contextmanager
def start_smtp_server(
    *,
    security: Security = "Plain",
    tls: TlsFiles | None = None,
    handler: RecordingHandler | None = None,
    credentials: tuple[str, bytes] | None = None,
    mechanisms: Sequence[str] = ("LOGIN", "PLAIN"),
    auth_require_tls: bool | None = None,
    echo_on_failure: Callable[[LoginPassword], bytes] | None = None,
) -> Iterator[SmtpServer]:
    """Run an aiosmtpd server on 127.0.0.1 for the duration of the block.

    `security`: "Plain" (no TLS at all, STARTTLS not offered), "STARTTLS" (offered),
    "TLS" (implicit TLS from the first byte); the last two need `tls`.
    `credentials`: offer AUTH with `mechanisms`, accepting this one user/password.
    `auth_require_tls`: default True for STARTTLS (AUTH only after the upgrade), else
    False (aiosmtpd cannot tell that an implicit-TLS session is encrypted).
    """
    handler = handler or RecordingHandler()
    kwargs: dict[str, Any] = {}
    if security != "Plain":
        assert tls is not None, f"{security} needs TLS files"
        context_key = "tls_context" if security == "STARTTLS" else "ssl_context"
        kwargs[context_key] = tls.server_context()
    authenticator = None
    if credentials is not None:
        authenticator = Authenticator(
            credentials[0].encode(), credentials[1], echo_on_failure=echo_on_failure
        )
        kwargs["authenticator"] = authenticator
        kwargs["auth_exclude_mechanism"] = [m for m in ("LOGIN", "PLAIN") if m not in mechanisms]
        kwargs["auth_require_tls"] = (
            security == "STARTTLS" if auth_require_tls is None else auth_require_tls
        )
    controller = _Controller(
        handler,
        hostname=LOCALHOST,
        port=0,
        server_hostname="smtp.analytics-mock.test",  # spares aiosmtpd a getfqdn()
        ready_timeout=5.0,
        **kwargs,
    )
    controller.start()
    try:
        yield SmtpServer(LOCALHOST, controller.port, handler, authenticator)
    finally:
        controller.stop()


# --- raw sockets for misbehaving servers ----------------------------------------------------


@contextmanager
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, never listening)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        yield sock.getsockname()[1]


@contextmanager
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 whose connections are accepted by the kernel and never answered."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        sock.listen(8)
        yield sock.getsockname()[1]


Reply = Callable[[bytes], bytes | None]


@contextmanager
def scripted_server(greeting: bytes | None, reply: Reply) -> Iterator[int]:
    """A raw SMTP-ish server on 127.0.0.1: sends `greeting` (None: hang up at once), then
    answers each received line with `reply(line)` and hangs up when that returns None."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOCALHOST, 0))
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        # The client hanging up first is normal here: not an error of the test run.
        with suppress(OSError), conn, conn.makefile("rb") as lines:
            if greeting is None:
                return
            conn.sendall(greeting)
            for line in lines:
                answer = reply(line)
                if answer is None:
                    return
                conn.sendall(answer)

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5.0)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


def ehlo_reply(*extensions: str) -> Reply:
    """A `reply` that answers EHLO with `extensions`, QUIT with 221 and the rest with 250."""

    def reply(line: bytes) -> bytes | None:
        verb = line.split(b" ", 1)[0].strip().upper()
        if verb == b"EHLO":
            lines = ["smtp.analytics-mock.test", *extensions]
            text = "".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}\r\n"
            return text.encode()
        if verb == b"QUIT":
            return None
        return b"250 OK\r\n"

    return reply
