"""Journal redaction: stored text is safe for any database, and no password survives."""

from __future__ import annotations

import json

import pytest

from analytics_mock.services.journal import redact_body, storable


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("plain ascii", "plain ascii"),
        ("nul\x00inside", "nul\\x00inside"),
        ("caf\u00e9", "caf\u00e9"),
        ("lone \udc80 surrogate", "lone \\udc80 surrogate"),
    ],
)
def test_storable_escapes_only_what_a_database_refuses(text: str, stored: str) -> None:
    assert storable(text) == stored


def test_a_body_already_parsed_is_redacted_as_if_parsed_here() -> None:
    raw = b'{"hostname": "h", "nested": {"Password": "c2VjcmV0"}, "list": [{"password": 1}]}'
    assert redact_body(raw, json.loads(raw)) == redact_body(raw)
    assert "c2VjcmV0" not in (redact_body(raw) or "")


def test_a_body_that_is_not_json_is_redacted_as_text() -> None:
    assert redact_body(b'{"password": "c2VjcmV0"') == '{"password": "***"'
    assert redact_body(b"") is None
