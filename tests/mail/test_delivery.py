"""deliver_test_mail against real SMTP servers on 127.0.0.1.

Every delivery goes through the `deliver` fixture, which also checks, for every scenario,
that the outcome detail is one line and that neither it nor any log record (DEBUG and up)
contains the password in any encoding.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiosmtplib
import pytest
from aiosmtpd.smtp import LoginPassword

from analytics_mock.mail import (
    DeliveryOptions,
    DeliveryOutcome,
    FailureKind,
    SecureConnection,
    SmtpTarget,
    deliver_test_mail,
)
from analytics_mock.mail.delivery import _classify, _tls_context
from tests.support.smtp_servers import (
    LOCALHOST,
    RecordingHandler,
    SmtpServer,
    TlsFiles,
    closed_port,
    ehlo_reply,
    scripted_server,
    silent_server,
    start_smtp_server,
)

pytestmark = pytest.mark.anyio

USER = "mailer"
PASSWORD = "Sésame-ouvre-toi!".encode()  # valid UTF-8, not ASCII
LATIN1_PASSWORD = b"gr\xfcn\xe9-\xff"  # not valid UTF-8
SENDER = "analyzer@example.com"
RECIPIENTS = ["ops@example.com", "oncall@example.net"]
FAST = DeliveryOptions(timeout=2.0, connect_timeout=2.0)

Deliver = Callable[..., Awaitable[DeliveryOutcome]]


def secret_forms(target: SmtpTarget) -> list[str]:
    """The ways the password could leak into text, computed independently of the code."""
    if not target.password:
        return []
    password = target.password
    plain = b"\0" + (target.username or "").encode() + b"\0" + password
    return [
        password.decode("utf-8", "surrogateescape"),
        password.decode("latin-1"),
        repr(password)[2:-1],
        base64.b64encode(password).decode(),
        base64.b64encode(plain).decode(),
    ]


@pytest.fixture
def deliver(caplog: pytest.LogCaptureFixture) -> Deliver:
    """deliver_test_mail, plus the one-line and no-password checks on every outcome."""
    caplog.set_level(logging.DEBUG)
    formatter = logging.Formatter()  # includes tracebacks, unlike getMessage()

    async def run(
        target: SmtpTarget,
        recipients: Sequence[str] = RECIPIENTS,
        options: DeliveryOptions = FAST,
    ) -> DeliveryOutcome:
        outcome = await deliver_test_mail(target, recipients, options)
        assert outcome.detail
        assert outcome.detail == " ".join(outcome.detail.split()), "detail must be one line"
        assert outcome.delivered == (outcome.failure is None)
        for secret in secret_forms(target):
            assert secret not in outcome.detail
            assert secret not in repr(outcome)
            assert secret not in repr(target)
            for record in caplog.records:
                if record.name.startswith("mail.log"):
                    continue  # the aiosmtpd test server's own log, not ours
                assert secret not in formatter.format(record), record
        return outcome

    return run


def target_for(
    port: int,
    security: SecureConnection = "Plain",
    *,
    auth: bool = False,
    password: bytes = PASSWORD,
    host: str = LOCALHOST,
) -> SmtpTarget:
    return SmtpTarget(
        hostname=host,
        port=port,
        security=security,
        sender=SENDER,
        username=USER if auth else None,
        password=password if auth else None,
    )


def trusting(tls_files: TlsFiles) -> DeliveryOptions:
    return DeliveryOptions(timeout=2.0, connect_timeout=2.0, ca_file=str(tls_files.ca_file))


def assert_arrived(server: SmtpServer, *, login: str | None, tls: bool, security: str) -> None:
    assert len(server.received) == 1
    mail = server.received[0]
    assert mail.sender == SENDER
    assert mail.recipients == RECIPIENTS
    assert mail.login == (login.encode() if login is not None else None)
    assert mail.tls is tls
    message = mail.message()
    assert [a.addr_spec for a in message["To"].addresses] == RECIPIENTS
    assert message["From"].addresses[0].addr_spec == SENDER
    assert "Test mail from analytics-mock" in message["Subject"]
    assert f"{LOCALHOST}:{server.port} ({security})" in message["Subject"]
    assert message["Date"] is not None
    assert message["Message-ID"] is not None


# --- delivery in every mode -------------------------------------------------------------------


@pytest.mark.parametrize("auth", [False, True], ids=["anonymous", "auth"])
@pytest.mark.parametrize("security", ["Plain", "STARTTLS", "TLS"])
async def test_delivers_in_every_mode(
    deliver: Deliver, tls_files: TlsFiles, security: SecureConnection, auth: bool
) -> None:
    # With STARTTLS the server announces AUTH only after the upgrade (auth_require_tls).
    credentials = (USER, PASSWORD) if auth else None
    with start_smtp_server(security=security, tls=tls_files, credentials=credentials) as server:
        outcome = await deliver(
            target_for(server.port, security, auth=auth), options=trusting(tls_files)
        )

    assert outcome.delivered, outcome.detail
    assert outcome.detail.startswith(
        f"delivered to 2 recipients via {LOCALHOST}:{server.port} ({security})"
    )
    assert "250 2.0.0 OK queued as TEST" in outcome.detail
    assert_arrived(server, login=USER if auth else None, tls=security != "Plain", security=security)


async def test_plain_never_upgrades_even_when_starttls_is_offered(
    deliver: Deliver, tls_files: TlsFiles
) -> None:
    with start_smtp_server(security="STARTTLS", tls=tls_files) as server:
        outcome = await deliver(target_for(server.port, "Plain"), options=trusting(tls_files))

    assert outcome.delivered, outcome.detail
    assert server.received[0].tls is False


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_uses_whichever_mechanism_the_server_offers(
    deliver: Deliver, tls_files: TlsFiles, mechanism: str
) -> None:
    with start_smtp_server(
        security="TLS", tls=tls_files, credentials=(USER, PASSWORD), mechanisms=[mechanism]
    ) as server:
        outcome = await deliver(
            target_for(server.port, "TLS", auth=True), options=trusting(tls_files)
        )

    assert outcome.delivered, outcome.detail
    assert server.authenticator is not None
    assert server.authenticator.attempts == [(mechanism, USER.encode())]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_non_utf8_password_goes_on_the_wire_byte_for_byte(
    deliver: Deliver, mechanism: str
) -> None:
    with start_smtp_server(credentials=(USER, LATIN1_PASSWORD), mechanisms=[mechanism]) as server:
        outcome = await deliver(target_for(server.port, auth=True, password=LATIN1_PASSWORD))

    assert outcome.delivered, outcome.detail
    assert server.received[0].login == USER.encode()


async def test_single_recipient_detail(deliver: Deliver) -> None:
    with start_smtp_server() as server:
        outcome = await deliver(target_for(server.port), recipients=["ops@example.com"])

    assert outcome.detail.startswith(f"delivered to 1 recipient via {LOCALHOST}:{server.port}")


async def test_host_name_is_verified_against_the_certificate(
    deliver: Deliver, tls_files: TlsFiles
) -> None:
    with start_smtp_server(security="TLS", tls=tls_files) as server:
        outcome = await deliver(
            target_for(server.port, "TLS", host="localhost"), options=trusting(tls_files)
        )

    assert outcome.delivered, outcome.detail


# --- TLS trust ----------------------------------------------------------------------------------


@pytest.mark.parametrize("security", ["STARTTLS", "TLS"])
async def test_untrusted_certificate_fails_and_nothing_is_sent(
    deliver: Deliver, tls_files: TlsFiles, other_ca_file: Path, security: SecureConnection
) -> None:
    with start_smtp_server(
        security=security, tls=tls_files, credentials=(USER, PASSWORD)
    ) as server:
        system_only = await deliver(target_for(server.port, security, auth=True))
        wrong_ca = await deliver(
            target_for(server.port, security, auth=True),
            options=DeliveryOptions(timeout=2.0, connect_timeout=2.0, ca_file=str(other_ca_file)),
        )

    for outcome in (system_only, wrong_ca):
        assert outcome.failure is FailureKind.TLS_FAILED, outcome.detail
        assert "CERTIFICATE_VERIFY_FAILED" in outcome.detail
    assert server.received == []
    assert server.authenticator is not None
    assert server.authenticator.attempts == []


@pytest.mark.parametrize("security", ["STARTTLS", "TLS"])
async def test_verification_can_be_switched_off(
    deliver: Deliver, tls_files: TlsFiles, security: SecureConnection
) -> None:
    with start_smtp_server(security=security, tls=tls_files) as server:
        outcome = await deliver(
            target_for(server.port, security),
            options=DeliveryOptions(timeout=2.0, connect_timeout=2.0, verify_tls=False),
        )

    assert outcome.delivered, outcome.detail
    assert server.received[0].tls


async def test_missing_ca_file_is_a_tls_failure(deliver: Deliver, tmp_path: Path) -> None:
    with start_smtp_server() as server:
        outcome = await deliver(
            target_for(server.port, "TLS"),
            options=DeliveryOptions(timeout=2.0, ca_file=str(tmp_path / "missing.pem")),
        )

    assert outcome.failure is FailureKind.TLS_FAILED
    assert "cannot load CA file" in outcome.detail


async def test_implicit_tls_against_a_plain_server_fails_the_handshake(
    deliver: Deliver, tls_files: TlsFiles
) -> None:
    with start_smtp_server() as server:
        outcome = await deliver(target_for(server.port, "TLS"), options=trusting(tls_files))

    assert outcome.failure is FailureKind.TLS_FAILED, outcome.detail


async def test_tls_contexts_are_cached(tls_files: TlsFiles) -> None:
    options = trusting(tls_files)
    assert await _tls_context(options) is await _tls_context(options)
    assert await _tls_context(options) is not await _tls_context(DeliveryOptions())


# --- STARTTLS and AUTH availability ---------------------------------------------------------------


async def test_starttls_not_offered_stops_before_anything_is_sent_in_clear(
    deliver: Deliver,
) -> None:
    handler = RecordingHandler()
    with start_smtp_server(handler=handler, credentials=(USER, PASSWORD)) as server:
        outcome = await deliver(target_for(server.port, "STARTTLS", auth=True))

    assert outcome.failure is FailureKind.STARTTLS_NOT_OFFERED
    assert "does not offer STARTTLS" in outcome.detail
    assert handler.transactions == 0
    assert server.authenticator is not None
    assert server.authenticator.attempts == []


async def test_starttls_answered_with_an_error_is_a_tls_failure(deliver: Deliver) -> None:
    def reply(line: bytes) -> bytes | None:
        if line.upper().startswith(b"STARTTLS"):
            return b"454 4.7.0 TLS not available due to temporary reason\r\n"
        return ehlo_reply("STARTTLS")(line)

    with scripted_server(b"220 hello\r\n", reply) as port:
        outcome = await deliver(target_for(port, "STARTTLS"))

    assert outcome.failure is FailureKind.TLS_FAILED
    assert "454 4.7.0 TLS not available" in outcome.detail


async def test_no_auth_offered(deliver: Deliver) -> None:
    with start_smtp_server() as server:
        outcome = await deliver(target_for(server.port, auth=True))

    assert outcome.failure is FailureKind.AUTH_NOT_SUPPORTED
    assert server.received == []


async def test_auth_withheld_on_a_clear_connection(deliver: Deliver) -> None:
    with start_smtp_server(credentials=(USER, PASSWORD), auth_require_tls=True) as server:
        outcome = await deliver(target_for(server.port, auth=True))

    assert outcome.failure is FailureKind.AUTH_NOT_SUPPORTED
    assert "may require TLS" in outcome.detail


async def test_only_unknown_auth_mechanisms(deliver: Deliver) -> None:
    with scripted_server(b"220 hello\r\n", ehlo_reply("AUTH XOAUTH2 GSSAPI")) as port:
        outcome = await deliver(target_for(port, auth=True))

    assert outcome.failure is FailureKind.AUTH_NOT_SUPPORTED
    assert "XOAUTH2 GSSAPI" in outcome.detail


async def test_wrong_password_is_rejected(deliver: Deliver) -> None:
    with start_smtp_server(credentials=(USER, b"another password")) as server:
        outcome = await deliver(target_for(server.port, auth=True))

    assert outcome.failure is FailureKind.AUTH_REJECTED
    assert "535" in outcome.detail
    assert repr(USER) in outcome.detail
    assert server.received == []


@pytest.mark.parametrize("password", [PASSWORD, LATIN1_PASSWORD], ids=["utf8", "latin1"])
async def test_password_echoed_by_the_server_is_scrubbed(deliver: Deliver, password: bytes) -> None:
    def echo(data: LoginPassword) -> bytes:
        # A careless server quoting the credentials back, raw and in every encoding we know.
        plain = base64.b64encode(b"\0" + data.login + b"\0" + data.password)
        return b"\r\n".join(
            [
                b"535-5.7.8 bad credentials: " + data.password,
                b"535-as latin-1: " + data.password.decode("latin-1").encode(),
                b"535-for LOGIN: " + base64.b64encode(data.password),
                b"535 for PLAIN: " + plain,
            ]
        )

    with start_smtp_server(credentials=(USER, b"expected"), echo_on_failure=echo) as server:
        outcome = await deliver(target_for(server.port, auth=True, password=password))

    assert outcome.failure is FailureKind.AUTH_REJECTED
    assert outcome.detail == (
        "authentication as 'mailer' rejected: 535 5.7.8 bad credentials: *** "
        "as latin-1: *** for LOGIN: *** for PLAIN: ***"
    )


# --- envelope refusals --------------------------------------------------------------------------


async def test_sender_refused(deliver: Deliver) -> None:
    with start_smtp_server(handler=RecordingHandler(refuse_sender=True)) as server:
        outcome = await deliver(target_for(server.port))

    assert outcome.failure is FailureKind.SENDER_REFUSED
    assert outcome.detail == f"sender refused: <{SENDER}> 553 5.7.1 <{SENDER}>: sender not allowed"
    assert server.received == []


async def test_one_refused_recipient_cancels_the_whole_message(deliver: Deliver) -> None:
    handler = RecordingHandler(refuse_recipients=["oncall@example.net"])
    with start_smtp_server(handler=handler) as server:
        outcome = await deliver(target_for(server.port))

    assert outcome.failure is FailureKind.RECIPIENT_REFUSED
    assert outcome.detail == (
        "recipient refused: <oncall@example.net> 550 5.1.1 <oncall@example.net>: no such user"
    )
    assert server.received == []  # nothing went to the accepted ops@example.com


async def test_every_refused_recipient_is_named(deliver: Deliver) -> None:
    with start_smtp_server(handler=RecordingHandler(refuse_recipients=RECIPIENTS)) as server:
        outcome = await deliver(target_for(server.port))

    assert outcome.failure is FailureKind.RECIPIENT_REFUSED
    assert outcome.detail.startswith("recipients refused: <ops@example.com> 550")
    assert "; <oncall@example.net> 550" in outcome.detail
    assert server.received == []


async def test_data_refused(deliver: Deliver) -> None:
    with start_smtp_server(handler=RecordingHandler(refuse_data=True)) as server:
        outcome = await deliver(target_for(server.port))

    assert outcome.failure is FailureKind.DATA_REFUSED
    assert outcome.detail == "message refused: 554 5.6.0 message content rejected"


# --- network failures ---------------------------------------------------------------------------


async def test_connection_refused(deliver: Deliver) -> None:
    with closed_port() as port:
        outcome = await deliver(target_for(port))

    assert outcome.failure is FailureKind.CONNECTION_REFUSED
    assert outcome.detail == f"connection to {LOCALHOST}:{port} refused"


async def test_dns_failure(deliver: Deliver) -> None:
    outcome = await deliver(target_for(25, host="smtp.analytics-mock.invalid"))

    assert outcome.failure is FailureKind.DNS_FAILURE
    assert "smtp.analytics-mock.invalid" in outcome.detail


async def test_silent_server_times_out_at_the_greeting(deliver: Deliver) -> None:
    with silent_server() as port:
        outcome = await deliver(
            target_for(port), options=DeliveryOptions(timeout=5.0, connect_timeout=0.3)
        )

    assert outcome.failure is FailureKind.TIMEOUT
    assert "during connect" in outcome.detail


async def test_overall_timeout_bounds_the_whole_attempt(deliver: Deliver) -> None:
    started = time.monotonic()
    with silent_server() as port:
        outcome = await deliver(
            target_for(port), options=DeliveryOptions(timeout=0.3, connect_timeout=10.0)
        )

    assert outcome.failure is FailureKind.TIMEOUT
    assert time.monotonic() - started < 1.5


async def test_slow_server_times_out_during_data(deliver: Deliver) -> None:
    with start_smtp_server(handler=RecordingHandler(data_delay=3.0)) as server:
        outcome = await deliver(target_for(server.port), options=DeliveryOptions(timeout=0.5))

    assert outcome.failure is FailureKind.TIMEOUT
    assert "during DATA" in outcome.detail


async def test_hang_up_before_the_greeting(deliver: Deliver) -> None:
    with scripted_server(None, ehlo_reply()) as port:
        outcome = await deliver(target_for(port))

    assert outcome.failure is FailureKind.CONNECTION_LOST, outcome.detail


async def test_hang_up_mid_transaction(deliver: Deliver) -> None:
    def reply(line: bytes) -> bytes | None:
        return None if line.upper().startswith(b"MAIL") else ehlo_reply()(line)

    with scripted_server(b"220 hello\r\n", reply) as port:
        outcome = await deliver(target_for(port))

    assert outcome.failure is FailureKind.CONNECTION_LOST
    assert "during MAIL FROM" in outcome.detail


async def test_greeting_refusal_is_an_smtp_error(deliver: Deliver) -> None:
    with scripted_server(b"554 5.3.2 no service for you\r\n", ehlo_reply()) as port:
        outcome = await deliver(target_for(port))

    assert outcome.failure is FailureKind.SMTP_ERROR
    assert "554 5.3.2 no service for you" in outcome.detail


async def test_garbage_reply_is_an_smtp_error(deliver: Deliver) -> None:
    with scripted_server(b"220 hello\r\n", lambda line: b"what?\r\n") as port:
        outcome = await deliver(target_for(port))

    assert outcome.failure is FailureKind.SMTP_ERROR, outcome.detail


def test_every_address_refused_is_connection_refused() -> None:
    # What asyncio raises when a name resolves to several addresses and all refuse.
    multiple = OSError(
        "Multiple exceptions: [Errno 111] Connect call failed ('::1', 25, 0, 0), "
        "[Errno 111] Connect call failed ('127.0.0.1', 25)"
    )
    error = aiosmtplib.SMTPConnectError(f"Error connecting to localhost on port 25: {multiple}")
    error.__cause__ = multiple

    kind, _ = _classify(error, "connect", target_for(25, host="localhost"), FAST)

    assert kind is FailureKind.CONNECTION_REFUSED


# --- input errors -------------------------------------------------------------------------------


async def test_bad_input_raises_before_connecting() -> None:
    with pytest.raises(ValueError, match="recipient"):
        await deliver_test_mail(target_for(25), [], FAST)
    with pytest.raises(ValueError, match="address"):
        await deliver_test_mail(target_for(25), ["not an address"], FAST)
    with pytest.raises(ValueError, match="secureConnection"):
        await deliver_test_mail(target_for(25, "SSL"), RECIPIENTS, FAST)  # type: ignore[arg-type]


async def test_logs_attempt_at_debug_and_outcome_at_info(
    deliver: Deliver, caplog: pytest.LogCaptureFixture
) -> None:
    with start_smtp_server(credentials=(USER, PASSWORD)) as server:
        await deliver(target_for(server.port, auth=True))

    ours = [r for r in caplog.records if r.name == "analytics_mock.mail"]
    assert [r.levelno for r in ours] == [logging.DEBUG, logging.INFO]
    assert f"{LOCALHOST}:{server.port} (Plain)" in ours[0].getMessage()
    assert "2 recipient(s)" in ours[0].getMessage()
    assert "delivered" in ours[1].getMessage()
