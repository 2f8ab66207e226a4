"""The test message that `sendTestMail` delivers."""

from __future__ import annotations

import email.errors
import email.policy
import email.utils
from collections.abc import Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage

# SMTP policy for CRLF line ends; 7bit so a non-ASCII host name in the body is
# quoted-printable and the message never needs the 8BITMIME extension.
_POLICY = email.policy.SMTP.clone(cte_type="7bit")


def parse_address(address: str) -> Address:
    """Parse one bare addr-spec (`user@example.com`), raising ValueError if it is not one."""
    if not address.isascii():
        # Non-ASCII mailboxes would need SMTPUTF8, which the emulator does not negotiate.
        raise ValueError(f"email address must be ASCII: {address!r}")
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, IndexError, email.errors.HeaderParseError) as exc:
        raise ValueError(f"invalid email address {address!r}: {exc}") from None
    if not parsed.domain:
        raise ValueError(f"email address has no domain: {address!r}")
    return parsed


def endpoint(hostname: str, port: int) -> str:
    """`host:port`, with an IPv6 literal in brackets."""
    return f"[{hostname}]:{port}" if ":" in hostname else f"{hostname}:{port}"


def build_test_message(
    sender: str,
    recipients: Sequence[str],
    *,
    hostname: str,
    port: int,
    security: str,
    now: datetime | None = None,
) -> EmailMessage:
    """Build the test mail from `sender` to all `recipients` (ValueError on a bad address)."""
    if not recipients:
        raise ValueError("at least one recipient is required")
    from_address = parse_address(sender)
    to_addresses = [parse_address(recipient) for recipient in recipients]
    sent_at = now if now is not None else datetime.now(UTC)
    via = f"{endpoint(hostname, port)} ({security})"

    message = EmailMessage(policy=_POLICY)
    message["From"] = from_address
    message["To"] = to_addresses
    message["Subject"] = f"Test mail from analytics-mock (Ops Center Analyzer emulator) via {via}"
    message["Date"] = email.utils.format_datetime(sent_at)
    # An explicit domain: make_msgid's default calls socket.getfqdn(), a blocking DNS lookup.
    message["Message-ID"] = email.utils.make_msgid("analytics-mock", domain=from_address.domain)
    message["X-Mailer"] = "analytics-mock"
    message.set_content(
        "This is a test mail sent by analytics-mock, an emulator of the\n"
        "Hitachi Ops Center Analyzer REST API (email server settings, sendTestMail).\n"
        "\n"
        f"SMTP server:         {endpoint(hostname, port)}\n"
        f"Connection security: {security}\n"
        f"Sender:              {from_address.addr_spec}\n"
        f"Recipients:          {', '.join(a.addr_spec for a in to_addresses)}\n"
        f"Sent at:             {message['Date']}\n"
        "\n"
        "If you can read this, the email server settings work. No action is needed.\n"
    )
    return message
