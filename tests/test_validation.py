"""Syntax checks: the host-name shortcut agrees with the standard library on every address."""

from __future__ import annotations

import ipaddress

import pytest

from analytics_mock.validation import is_host, is_ip_address


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
