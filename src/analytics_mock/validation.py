"""Syntax checks for host names, mail addresses and Base64 passwords.

The host-name, mail-address and password rules are regular expressions that the OpenAPI
document publishes as they are: a value the document's pattern admits is a value the server
admits. They are written in the subset that ECMA-262 (JSON Schema's dialect) and Python read
alike: the end of the text is `(?![\\s\\S])`, since `$` also matches before a final newline in
Python, and digits are `[0-9]`, since `\\d` matches any Unicode digit in Python.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

_END = r"(?![\s\S])"
_H16 = "[0-9A-Fa-f]{1,4}"
_DEC_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"(?:{_DEC_OCTET}\.){{3}}{_DEC_OCTET}"
_LS32 = f"(?:{_H16}:{_H16}|{_IPV4})"
# RFC 3986's IPv6address: "::" stands for at least one group, as in Python's ipaddress.
_IPV6 = (
    "(?:"
    + "|".join(
        (
            f"(?:{_H16}:){{6}}{_LS32}",
            f"::(?:{_H16}:){{5}}{_LS32}",
            f"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
            f"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
            f"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
            f"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
            f"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
            f"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
            f"(?:(?:{_H16}:){{0,6}}{_H16})?::",
        )
    )
    + ")"
)
_DNS_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# At most 253 characters besides a trailing dot; an all-digit last label is a bad address.
_DNS_NAME = rf"(?=[\s\S]{{1,253}}\.?{_END})(?:{_DNS_LABEL}\.)*(?![0-9]+\.?{_END}){_DNS_LABEL}\.?"
_DOT_ATOM = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_QUOTED_STRING = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
_ADDRESS_LITERAL = rf"\[(?:{_IPV4}|[Ii][Pp][Vv]6:{_IPV6})\]"

#: An IPv4 or IPv6 literal (no brackets, no zone), or an RFC 1123 host name.
HOST_PATTERN = f"^(?:{_IPV4}|{_IPV6}|{_DNS_NAME}){_END}"
#: An RFC 5321 mailbox: at most 254 characters, a local part of at most 64 (before the last @).
MAIL_ADDRESS_PATTERN = (
    # The local part is what comes before the last @: no @ after the 65th character is one.
    rf"^(?=[\s\S]{{1,254}}{_END})(?![\s\S]{{65,}}@[^@]*{_END})"
    rf"(?:{_DOT_ATOM}|{_QUOTED_STRING})@(?:{_DNS_NAME}|{_ADDRESS_LITERAL}){_END}"
)
#: Standard, padded Base64 of 1 to 255 bytes.
PASSWORD_PATTERN = (
    rf"^(?=[\s\S]{{4,340}}{_END})(?:[A-Za-z0-9+/]{{4}})*"
    rf"(?:[A-Za-z0-9+/]{{2}}==|[A-Za-z0-9+/]{{3}}=)?{_END}"
)
_HOST = re.compile(HOST_PATTERN)
_MAIL_ADDRESS = re.compile(MAIL_ADDRESS_PATTERN)

_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def is_ip_address(value: str) -> bool:
    """Whether `value` is an IPv4 or IPv6 literal (no brackets)."""
    # Only digits and dots can make IPv4, and IPv6 needs a colon: a host name (the usual value)
    # is told apart without the two failed parses and their exceptions.
    if ":" not in value and not value.replace(".", "").isdigit():
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_host(value: str) -> bool:
    """Whether `value` is an IP literal (without a zone) or a host name, as `HOST_PATTERN`."""
    return len(value) <= 255 and _HOST.match(value) is not None


def is_mail_address(value: str) -> bool:
    """Whether `value` is an RFC 5321 mailbox (ASCII) within its length limits."""
    return _MAIL_ADDRESS.match(value) is not None


SMTP_PASSWORD_RULE = "must be Base64 (standard, padded) of 1 to 255 bytes"  # noqa: S105


def smtp_password(value: str) -> bytes | None:
    """The bytes of an SMTP password as the API takes it; None if it breaks the rule."""
    if not _BASE64.fullmatch(value):
        return None
    try:
        decoded = base64.b64decode(value, validate=True)
    except binascii.Error:
        return None
    return decoded if 1 <= len(decoded) <= 255 else None
