"""Syntax checks: the host-name shortcut agrees with the standard library on every address."""

from __future__ import annotations

import ipaddress

import pytest

from analytics_mock.validation import is_host, is_ip_address, is_mail_address


def stdlib_says_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    "value",
    [
        "192.0.2.10",
        "0.0.0.0",
        "::1",
        "fe80::1%eth0",
        "::ffff:192.0.2.1",
        "1.2.3",
        "1.2.3.4.5",
        "1.2.3.999",
        "01.2.3.4",
        # Arabic-Indic digits and a superscript: str.isdigit says yes, ipaddress says no.
        "\u0661.\u0662.\u0663.\u0664",
        "\u00b9.2.3.4",
        "..",
        "",
        "smtp.example.com",
        "localhost",
        "a:b",
    ],
)
def test_ip_addresses_are_what_the_standard_library_parses(value: str) -> None:
    assert is_ip_address(value) == stdlib_says_ip(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("smtp.example.com", True),
        ("mail-1.example.co.jp.", True),
        ("192.0.2.10", True),
        ("::1", True),
        ("1.2.3.999", False),
        ("-bad.example.com", False),
        ("a" * 256, False),
    ],
)
def test_hosts(value: str, expected: bool) -> None:
    assert is_host(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "fe80::1%eth0",  # [pick] no zone: it names an interface of the emulator's host
        "smtp.example.com\n",  # Python's `$` would let a final newline through
        "1:2:3:4:5:6:7:8:9",
        "1::2:3:4:5:6:7:8",
        "a" * 64 + ".example.com",
    ],
)
def test_hosts_the_published_pattern_refuses(value: str) -> None:
    assert not is_host(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"a@b"@example.com', True),
        ("a@[IPv6:::1]", True),
        ("a@[ipv6:fe80::1%eth0]", False),
        ("a@[1.2.3.4]", True),
        ("a" * 64 + "@example.com", True),
        ("a" * 65 + "@example.com", False),
        ("ops@example.com\n", False),
        ("ops@example.com.", True),
        ("ops@1.2.3.999", False),
    ],
)
def test_mail_addresses(value: str, expected: bool) -> None:
    assert is_mail_address(value) == expected
