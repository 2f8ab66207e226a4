"""Journal redaction: stored text is safe for any database, and no password survives."""

from __future__ import annotations

import json

import pytest

from analytics_mock.services.journal import redact_body, redact_headers, redact_text, storable


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


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"Basic\tdXNlcjpzZWNyZXQ=", "Basic ***"),  # a tab, not a space, after the scheme
        (b"dXNlcjpzZWNyZXQ=", "***"),  # no scheme: the first word is the credential
        (b"Bearer  dG9rZW4=", "Bearer ***"),
        (b"c2VjcmV0 c2VjcmV0", "***"),  # no known scheme
    ],
)
def test_an_authorization_header_keeps_at_most_a_known_scheme(raw: bytes, value: str) -> None:
    shown = redact_headers([(b"authorization", raw)])
    assert shown == {"authorization": value}


@pytest.mark.parametrize(
    "name",
    [b"x-authorization", b"x-auth-token", b"x-api-key", b"api_key", b"x-client-secret",
     b"x-password", b"cookie", b"set-cookie", b"x-session-id", b"x-hsso", b"x-sso",
     b"x-jwt", b"x-key", b"x-sess", b"x-pass"],
)  # fmt: skip
def test_any_header_whose_name_suggests_a_credential_is_masked(name: bytes) -> None:
    shown = redact_headers([(name, b"c2VjcmV0"), (b"content-type", b"application/json")])
    assert shown == {name.decode(): "***", "content-type": "application/json"}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('{"pass\\u0077ord": "c2VjcmV0", "hostname": ', '{"pass\\u0077ord": "***", "hostname": '),
        ("{'Password': 'c2VjcmV0'", "{'Password': '***'"),
        ('{"password": "c2VjcmV0', '{"password": "***"'),
        ('{"hostname": "password", "port": 25', '{"hostname": "password", "port": 25'),
        ("pass%77ord=c2VjcmV0&x=1", "pass%77ord=***&x=1"),
        ("pass%2577ord=c2VjcmV0", "pass%2577ord=***"),
        ("x[password]=c2VjcmV0&y=2", "x[password]=***&y=2"),
        ("x%5Bpassword%5D=c2VjcmV0", "x%5Bpassword%5D=***"),
        ("user[pass%77ord]=c2VjcmV0", "user[pass%77ord]=***"),
        ("password=c2Vj=cmV0:x&hostname=h", "password=***&hostname=h"),
        ("hostname=h&port=25", "hostname=h&port=25"),
        ("a=\"&password=c2VjcmV0&b='&token=dG9r", "a=\"&password=***&b='&token=***"),
        ('{"password"\x01:"c2VjcmV0"}', '{"password"\x01:"***"}'),
        ('{"password" \x7f : "c2VjcmV0"}', '{"password" \x7f : "***"}'),
        ('{"password"\u200b:"c2VjcmV0"}', '{"password"\u200b:"***"}'),
        ('{"password";"c2VjcmV0"}', '{"password";"***"}'),
        ("pwd=c2VjcmV0&jwt=dG9r", "pwd=***&jwt=***"),
        ('{"password"//note\n:"c2VjcmV0"}', '{"password"//note\n:"***"}'),
        ('{"password" , "c2VjcmV0"}', '{"password" , "***"}'),
        ("{'password',c2VjcmV0}", "{'password',***}"),
        ('{"x": "password", "y": "h"', '{"x": "password", "y": "h"'),
        ('{"x": "password" , "y" : "h"', '{"x": "password" , "y" : "h"'),
        ("fields=password,hostname", "fields=password,hostname"),
        ("password%3Dhunter2xyz", "password%3D***"),
        ("x=1&password%3Dhunter3xyz&y=2", "x=1&password%3D***&y=2"),
        ("password%253Dhunter9xyz", "password%253D***"),
        ("password%3ahunter10xyz", "password%3a***"),
        ("password%3DU3gxMjM0NTY=", "password%3D***="),
        ("x=password%2Ccomma", "x=password%2Ccomma"),
        ('{"password" "hunter7xyz"}', '{"password" "***"}'),
        ('{"password"  \n\n  "c2VjcmV0"}', '{"password"  \n\n  "***"}'),
        ('{"x": "password" "y": 1', '{"x": "password" "y": 1'),
        ("pass+word=c2VjcmV0", "pass+word=***"),
        ('{"pass\x01word": "c2VjcmV0"', '{"pass\x01word": "***"'),
        ('{"pass\\u0077ord": "c2VjcmV0"', '{"pass\\u0077ord": "***"'),
    ],
)
def test_text_is_masked_by_each_name_as_decoded(text: str, shown: str) -> None:
    assert redact_text(text) == shown
    assert redact_body(text.encode()) == shown


def test_a_json_member_is_masked_by_its_decoded_name() -> None:
    raw = (
        b'{"pass\\u0077ord": "c2VjcmV0", "x[password]": "c2VjcmV0", "hostname": "h", '
        b'"pass\\\\u0077ord": "c2VjcmV0", "pass\\u200bword": "c2VjcmV0"}'
    )
    assert json.loads(redact_body(raw) or "") == {
        "password": "***",
        "x[password]": "***",
        "hostname": "h",
        "pass\\u0077ord": "***",  # escaped twice over
        "pass\u200bword": "***",
    }


@pytest.mark.parametrize("text", ['"\\' * 32768, "a=" * 32768, '{"a":' * 13000, "'" * 65536])
def test_hostile_text_is_read_in_one_pass(text: str) -> None:
    # Read in one pass these take milliseconds; a scan restarting at every quote takes minutes.
    assert redact_text(text + "&password=c2VjcmV0").endswith("password=***")
