"""The test message: headers, body, and rejection of addresses that cannot go on the wire."""

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from analytics_mock.mail import build_test_message

NOW = datetime(2024, 5, 17, 8, 30, 0, tzinfo=UTC)
RECIPIENTS = ["ops@example.com", "oncall@example.net"]


def _build(**overrides: object) -> EmailMessage:
    arguments: dict[str, object] = {
        "sender": "analyzer@example.com",
        "recipients": RECIPIENTS,
        "hostname": "smtp.example.com",
        "port": 587,
        "security": "STARTTLS",
        "now": NOW,
    } | overrides
    return build_test_message(**arguments)  # type: ignore[arg-type]


def test_headers_name_sender_all_recipients_and_the_route() -> None:
    message = _build()

    assert message["From"].addresses[0].addr_spec == "analyzer@example.com"
    assert [a.addr_spec for a in message["To"].addresses] == RECIPIENTS
    subject = str(message["Subject"])
    assert "Test mail from analytics-mock" in subject
    assert "Ops Center Analyzer" in subject
    assert "smtp.example.com:587 (STARTTLS)" in subject
    assert message["Date"].datetime == NOW
    assert str(message["Message-ID"]).endswith("@example.com>")


def test_body_says_it_is_a_test_and_how_it_travelled() -> None:
    body = _build().get_content()

    assert "test mail sent by analytics-mock" in body
    assert "Hitachi Ops Center Analyzer" in body
    assert "smtp.example.com:587" in body
    assert "Connection security: STARTTLS" in body
    assert "ops@example.com, oncall@example.net" in body


def test_message_ids_are_unique() -> None:
    assert _build()["Message-ID"] != _build()["Message-ID"]


def test_date_defaults_to_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    message = _build(now=None)
    assert before <= message["Date"].datetime <= datetime.now(UTC)


def test_ipv6_server_is_bracketed() -> None:
    assert "[::1]:25 (Plain)" in str(_build(hostname="::1", port=25, security="Plain")["Subject"])


def test_wire_form_is_7bit_with_crlf_even_for_a_non_ascii_host_name() -> None:
    raw = _build(hostname="smtp.bücher.example").as_bytes()

    assert raw.isascii()
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert "smtp.bücher.example:587" in parsed.get_content()
    assert "smtp.bücher.example:587" in str(parsed["Subject"])


@pytest.mark.parametrize(
    "address",
    [
        "",
        "no-at-sign",
        "two@example.com, addresses@example.com",
        "<angle@example.com>",
        "spaced out@example.com",
        "inject@example.com\r\nBcc: victim@example.com",
        "ünicode@example.com",
        "user@bücher.example",
    ],
)
def test_bad_addresses_are_rejected(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        _build(recipients=["ok@example.com", address])
    with pytest.raises(ValueError, match="address"):
        _build(sender=address)


def test_no_recipients_is_rejected() -> None:
    with pytest.raises(ValueError, match="recipient"):
        _build(recipients=[])


def test_header_injection_through_the_host_name_is_rejected() -> None:
    with pytest.raises(ValueError):
        _build(hostname="smtp.example.com\r\nBcc: victim@example.com")
