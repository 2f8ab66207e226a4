"""Any sequence of PUTs leaves the stored settings equal to a model of the contract (2.2).

Hypothesis draws sequences of PUT bodies, valid and invalid, from pools whose validity is the
contract's own table (types, coercions, limits, null keeps, unknown members, `userId` required
with authentication, `password` validated only with `updatePassword`). After each PUT the
answer, the listed object and the stored password (seen only as `passwordEncrypted` through
`/_mock/state`) must match what the model predicts; a refused PUT changes nothing.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from analytics_mock.testing import AnalyticsMock
from tests.support.helpers import OBJECT_PATH, SETTINGS_PATH
from tests.support.reliability import envelope_problems

# The JSON bodies go out exactly as built here (no re-encoding by httpx).
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Value:
    """A member value as sent, whether the contract accepts it, and what it is stored as."""

    sent: Any
    ok: bool
    stored: Any = None


def accepted(*values: Any) -> list[Value]:
    return [Value(v, True, v) for v in values]


def coerced(pairs: dict[Any, Any]) -> list[Value]:
    return [Value(sent, True, stored) for sent, stored in pairs.items()]


def refused(*values: Any) -> list[Value]:
    return [Value(v, False) for v in values]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


BOOLEAN = [
    *accepted(True, False),
    *coerced({"true": True, "false": False}),
    *refused(0, 1, "True", "FALSE", "yes", ""),
]
POOLS: dict[str, list[Value]] = {
    "hostname": [
        *accepted(
            "smtp.example.com",
            "10.0.0.1",
            "::1",
            "mail-1.example.org.",
            "a" * 63 + ".example.com",
            "localhost",
        ),
        *refused("", "bad host", "-bad.example.com", "1.2.3.999", "a" * 256, 25, True, ["x"]),
    ],
    "portNumber": [
        *accepted(1, 25, 587, 65535),
        *coerced({"587": 587, "0000000025": 25}),
        *refused(0, 65536, -1, "abc", "", 25.0, 25.5, True, "\uff12\uff15", " 25", "99999999999"),
        *refused(10**20, "+25"),
    ],
    "secureConnection": [
        *accepted("TLS", "Plain", "STARTTLS"),
        *refused("tls", "PLAIN", "", 1, True),
    ],
    "authenticationEnabled": BOOLEAN,
    "updatePassword": BOOLEAN,
    "userId": [
        *accepted("mailer", "\u30e6\u30fc\u30b6\u30fc", "u" * 255, "\u00e9" * 127, "with space"),
        *refused("", "u" * 256, "\u00e9" * 128, "tab\there", "nl\n", "del\x7f", 5, True),
        *refused("csi\u009bx", "nel\u0085", "\u0080"),  # C1 control characters
    ],
    "senderAddress": [
        *accepted("ops@example.com", "a.b+c@[127.0.0.1]", '"quoted local"@example.com', "x@y"),
        *refused("no-at", "a@", "@example.com", "\u00e9@example.com", 5, "a" * 65 + "@x.com"),
    ],
    # Validated only when updatePassword is true; `stored` is the decoded password.
    "password": [
        Value("c2VjcmV0", True, b"secret"),
        Value("YQ==", True, b"a"),
        Value(b64(bytes(range(255))), True, bytes(range(255))),
        *refused("not base64!", "YQ", "", "YQ==\n", b64(bytes(256)), 5, True),
    ],
    # Ignored: the path names the object.
    "instanceID": [*accepted("x", "mailServerSetting#9", 5, 1.5), *refused(True, [], {})],
}
UNKNOWN = {"hostName": "smtp.example.com", "password2": "c2VjcmV0", "": 1}
MEMBERS = sorted(POOLS)
PUBLIC = ["hostname", "authenticationEnabled", "userId", "senderAddress", "secureConnection"]


@dataclass(frozen=True)
class Model:
    """The stored object as the contract defines it, with the password it would send."""

    hostname: str = "localhost"
    portNumber: int = 25  # noqa: N815 - the vendor's member names
    secureConnection: str = "Plain"  # noqa: N815
    authenticationEnabled: bool = False  # noqa: N815
    userId: str | None = None  # noqa: N815
    senderAddress: str = "analytics@localhost"  # noqa: N815
    password: bytes | None = None

    def public(self) -> dict[str, Any]:
        return {
            "instanceID": "mailServerSetting#0",
            "hostname": self.hostname,
            "authenticationEnabled": self.authenticationEnabled,
            "userId": self.userId,
            "senderAddress": self.senderAddress,
            "secureConnection": self.secureConnection,
            "portNumber": self.portNumber,
        }


@dataclass(frozen=True)
class Put:
    """One PUT: its raw body, and how the model reads it."""

    raw: bytes
    document: Any  # the parsed JSON (a dict of Values for an object body), or NOT_JSON
    note: str


NOT_JSON = object()


@dataclass(frozen=True)
class Outcome:
    model: Model
    message_ids: frozenset[str]  # empty: accepted
    password_changed: bool = False


def apply(model: Model, put: Put) -> Outcome:  # noqa: PLR0911 - one return per rule
    """The contract's answer to `put` and the state after it, rule by rule in its order."""
    if put.document is NOT_JSON:
        return Outcome(model, frozenset({"generic error"}))
    if not isinstance(put.document, dict):
        return Outcome(model, frozenset({"KNAQ20001-E"}))
    body: dict[str, Value] = put.document
    errors: set[str] = set()
    for name, value in body.items():
        if name not in POOLS:
            errors.add("KNAQ20002-E")
        elif name != "password" and value.sent is not None and not value.ok:
            errors.add("KNAQ20003-E")
    if errors:
        return Outcome(model, frozenset(errors))
    changes = {
        name: value.stored
        for name, value in body.items()
        if value.sent is not None and name not in {"password", "updatePassword", "instanceID"}
    }
    merged = replace(model, **changes)
    if merged.authenticationEnabled and merged.userId is None:
        return Outcome(model, frozenset({"KNAQ20004-E"}))
    update = body.get("updatePassword")
    if update is not None and update.stored is True:
        password = body.get("password")
        if password is None or password.sent is None:
            return Outcome(model, frozenset({"KNAQ20004-E"}))
        if not password.ok:
            return Outcome(model, frozenset({"KNAQ20003-E"}))
        return Outcome(replace(merged, password=password.stored), frozenset(), True)
    return Outcome(merged, frozenset())


@st.composite
def member_value(draw: st.DrawFn, name: str) -> Value:
    """Mostly accepted values, so that sequences travel far from the seed state."""
    pool = POOLS[name]
    roll = draw(st.integers(0, 9))
    if roll == 0:
        return Value(None, True)  # null: keep
    if roll == 1 or (name == "password" and roll == 2):
        return draw(st.sampled_from([value for value in pool if not value.ok]))
    return draw(st.sampled_from([value for value in pool if value.ok]))


@st.composite
def object_puts(draw: st.DrawFn) -> Put:
    names = draw(st.lists(st.sampled_from(MEMBERS), unique=True, max_size=6))
    body = {name: draw(member_value(name)) for name in names}
    if draw(st.integers(0, 9)) == 0:
        unknown = draw(st.sampled_from(sorted(UNKNOWN)))
        body[unknown] = Value(UNKNOWN[unknown], False)
    raw = json.dumps({name: value.sent for name, value in body.items()}).encode()
    return Put(raw, body, "object")


OTHER_PUTS = [
    Put(b"", NOT_JSON, "empty"),
    Put(b"{", NOT_JSON, "truncated"),
    Put(b'{"portNumber": NaN}', NOT_JSON, "NaN"),
    Put(b'{"hostname": "\xff"}', NOT_JSON, "bad UTF-8"),
    Put(b"[1]", [1], "array"),
    Put(b'"text"', "text", "string"),
    Put(b"null", None, "null"),
]


def stored_password(mock: AnalyticsMock) -> Any:
    [setting] = mock.state["settings"]
    return setting["passwordEncrypted"]


def check_answer(response: httpx.Response, outcome: Outcome, put: Put) -> None:
    context = f"PUT {put.raw[:200]!r}"
    if not outcome.message_ids:
        assert response.status_code == 200, f"{context}: {response.text}"
        assert response.json() == outcome.model.public(), context
        return
    assert envelope_problems(response, 400) == [], f"{context}: {response.text}"
    assert response.json()["messageID"] in outcome.message_ids, f"{context}: {response.text}"


class PutSequence(RuleBasedStateMachine):
    """Each run starts from the seed state; each step is one PUT checked against the model."""

    mock: AnalyticsMock  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        self.mock.reset()
        self.model = Model()
        self.password = stored_password(self.mock)
        assert self.password is None

    def _put(self, put: Put) -> None:
        outcome = apply(self.model, put)
        response = self.mock.client.put(OBJECT_PATH, content=put.raw, headers=JSON)
        check_answer(response, outcome, put)
        listed = self.mock.client.get(SETTINGS_PATH)
        assert listed.status_code == 200
        assert listed.json()["data"] == [outcome.model.public()], f"after PUT {put.raw[:200]!r}"
        assert "password" not in listed.text.lower()
        now = stored_password(self.mock)
        assert (now is None) == (outcome.model.password is None)
        assert (now != self.password) == outcome.password_changed, f"after {put.raw[:200]!r}"
        self.model, self.password = outcome.model, now

    @rule(put=object_puts())
    def put_object(self, put: Put) -> None:
        self._put(put)

    @rule(put=st.sampled_from(OTHER_PUTS))
    def put_something_else(self, put: Put) -> None:
        self._put(put)


def test_any_put_sequence_matches_the_model(analytics_mock: AnalyticsMock) -> None:
    PutSequence.mock = analytics_mock
    run_state_machine_as_test(
        PutSequence,
        settings=settings(
            max_examples=60,
            stateful_step_count=15,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_the_model_reads_the_contract_examples() -> None:
    # The model itself, on the contract's own sentences.
    base = Model()
    auth_without_user = Put(b"", {"authenticationEnabled": Value(True, True, True)}, "")
    assert apply(base, auth_without_user).message_ids == {"KNAQ20004-E"}
    ignored_password = Put(b"", {"password": Value("not base64!", False)}, "")
    assert apply(base, ignored_password) == Outcome(base, frozenset())
    kept = Put(b"", {"hostname": Value(None, True)}, "")
    assert apply(base, kept).model == base
    port = Put(b"", {"portNumber": Value("587", True, 587)}, "")
    assert apply(base, port).model.portNumber == 587
