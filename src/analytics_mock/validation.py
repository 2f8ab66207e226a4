"""Syntax checks for host names, mail addresses and SMTP passwords (Base64)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_QUOTED_LOCAL = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
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


def is_dns_name(value: str) -> bool:
    """Whether `value` is a host name by RFC 1123 (a trailing dot allowed)."""
    name = value.removesuffix(".")
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    # An all-digit last label would make "1.2.3.999" a host name instead of a bad address.
    if labels[-1].isdigit():
        return False
    return all(_LABEL.fullmatch(label) for label in labels)


def is_host(value: str) -> bool:
    """Whether `value` is an IP literal or a host name of at most 255 characters."""
    return 0 < len(value) <= 255 and (is_ip_address(value) or is_dns_name(value))


def _is_address_literal(domain: str) -> bool:
    if not (domain.startswith("[") and domain.endswith("]")):
        return False
    inner = domain[1:-1]
    if inner.lower().startswith("ipv6:"):
        try:
            ipaddress.IPv6Address(inner[5:])
        except ValueError:
            return False
        return True
    try:
        ipaddress.IPv4Address(inner)
    except ValueError:
        return False
    return True


def is_mail_address(value: str) -> bool:
    """Whether `value` is an RFC 5321 mailbox (ASCII) within its length limits."""
    # 256 octets for the reverse path minus its two angle brackets.
    if len(value) > 254 or not value.isascii():
        return False
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or len(local) > 64 or len(domain) > 255:
        return False
    local_ok = bool(_QUOTED_LOCAL.fullmatch(local)) or all(
        _ATOM.fullmatch(atom) for atom in local.split(".")
    )
    return local_ok and (_is_address_literal(domain) or is_dns_name(domain))


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
