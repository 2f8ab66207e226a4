"""A test mail's failure quotes at most a bounded, printable excerpt of what the server said.

Raw loopback servers, one line each: a service that is not SMTP (an SSH banner), and an SMTP
server whose refusal is huge and full of control bytes.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from analytics_mock.mail import DeliveryOptions, SmtpTarget, deliver_test_mail

pytestmark = pytest.mark.anyio

FAST = DeliveryOptions(timeout=3.0, connect_timeout=3.0)
BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
HUGE = b"550 " + b"\x1b[31mX\x07" * 180 + b"secret-tail\r\n"


@contextmanager
def raw_server(greeting: bytes, then: bytes = b"") -> Iterator[int]:
    """A loopback server that sends `greeting`, then `then` after each of the client's lines."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        listener.settimeout(5.0)
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(5.0)
            try:
                connection.sendall(greeting)
                while then and connection.recv(1024):
                    connection.sendall(then)
                done.wait(5.0)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        listener.close()
        thread.join(5.0)


def target(port: int) -> SmtpTarget:
    return SmtpTarget(
        hostname="127.0.0.1",
        port=port,
        security="Plain",
        sender="analyzer@example.com",
        username=None,
        password=None,
    )


async def test_a_service_that_is_not_smtp_is_not_quoted() -> None:
    with raw_server(BANNER) as port:
        outcome = await deliver_test_mail(target(port), ["ops@example.com"], FAST)
    assert not outcome.delivered
    assert "OpenSSH" not in outcome.detail
    assert "SSH-2.0" not in outcome.detail
    assert "did not answer as an SMTP server" in outcome.detail


async def test_a_long_reply_is_quoted_bounded_and_printable() -> None:
    with raw_server(b"220 mail.example.com ESMTP\r\n", HUGE) as port:
        outcome = await deliver_test_mail(target(port), ["ops@example.com"], FAST)
    assert not outcome.delivered
    assert "550" in outcome.detail
    assert "secret-tail" not in outcome.detail
    assert outcome.detail.isprintable() and outcome.detail.isascii()
    assert len(outcome.detail) < 300, outcome.detail
