"""Bodies of the test-control API under `/_mock/`."""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from analytics_mock.formats import CONTROL_CHARACTERS, MAX_INT
from analytics_mock.mail import FailureKind
from analytics_mock.schemas.seed import Permission, SeedSetting, UserName, check_unique

NoNul = StringConstraints(pattern=r"^[^\x00]*$")

HttpMethod = Literal["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"]


HeaderName = Annotated[str, StringConstraints(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")]
HeaderValue = Annotated[str, StringConstraints(pattern=r"^[\x20-\x7e\t]{0,1024}$")]
# Headers the server frames the answer with; a fault that set them would break the framing.
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
# The same names in the document's regex dialect (ECMA-262 has no case-insensitive flag).
_FRAMING_PATTERN = (
    "^(?:"
    + "|".join(
        "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in name)
        for name in sorted(FRAMING_HEADERS)
    )
    + ")(?![\\s\\S])"
)
# What a fault may do to the connection instead of answering: on the wire and, in-process, as
# the httpx error a client would get over a real socket.
CONNECTION_FAULTS = ("drop", "reset", "empty")


def _json_integer(value: object) -> object:
    # JSON Schema's integer: 5 and 5.0, never "5" or true, which lax validation would take.
    if isinstance(value, bool | str):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# The control bodies take JSON's own types, as their schemas say.
JsonBool = Annotated[bool, Strict()]

# The effects a fault rule can have: each is a member that, when set so, gives the rule an
# effect; a rule needs at least one. The document says so as an `anyOf` of these branches,
# and the validator below decides by the same table.
FAULT_EFFECTS: dict[str, JsonDict] = {
    "status": {"type": "integer"},
    "delayMs": {"type": "integer", "minimum": 1},
    "jitterMs": {"type": "integer", "minimum": 1},
    "drop": {"const": True},
    "reset": {"const": True},
    "empty": {"const": True},
    "malformed": {"const": True},
    "headers": {"type": "object", "minProperties": 1},
    "body": {"type": "string"},
}
# Effects that exclude each other: two ways to end the connection, a status on a connection
# that gets no answer, an answer's body or headers on a connection that gets none.
EXCLUSIVE_EFFECTS: tuple[tuple[str, str], ...] = (
    ("drop", "reset"),
    ("drop", "empty"),
    ("reset", "empty"),
    ("status", "drop"),
    ("status", "reset"),
    *((kind, part) for kind in CONNECTION_FAULTS for part in ("malformed", "body", "headers")),
    ("malformed", "body"),
)
# A status below 400 is not an error envelope, so the rule must say what to answer.
_LOW_STATUS_ANSWERS = ("body", "malformed", "empty")


def _has(member: str, schema: JsonDict) -> JsonDict:
    return {"required": [member], "properties": {member: schema}}


def _fault_schema(schema: JsonDict) -> None:
    schema["anyOf"] = [_has(member, rule) for member, rule in FAULT_EFFECTS.items()]
    schema["not"] = {
        "anyOf": [
            {"allOf": [_has(one, FAULT_EFFECTS[one]), _has(other, FAULT_EFFECTS[other])]}
            for one, other in EXCLUSIVE_EFFECTS
        ]
    }
    schema["allOf"] = [
        {
            "if": _has("status", {"type": "integer", "maximum": 399}),
            "then": {"anyOf": [_has(m, FAULT_EFFECTS[m]) for m in _LOW_STATUS_ANSWERS]},
        },
        {
            "if": _has("seed", {"type": "integer"}),
            "then": _has("jitterMs", FAULT_EFFECTS["jitterMs"]),
        },
    ]
    properties = cast(dict[str, JsonDict], schema["properties"])
    # Pydantic states the names as patternProperties, which leave other names unchecked.
    for branch in cast(list[JsonDict], properties["headers"].get("anyOf", [])):
        if branch.get("type") == "object":
            patterns = cast(dict[str, JsonDict], branch.pop("patternProperties"))
            [(name_pattern, value_schema)] = patterns.items()
            branch["propertyNames"] = {
                "pattern": name_pattern,
                "not": {"pattern": _FRAMING_PATTERN},
            }
            branch["additionalProperties"] = value_schema


def _effects(fault: FaultIn) -> set[str]:
    """The effects `fault` has, by the rules of `FAULT_EFFECTS`."""
    values = {
        "status": fault.status is not None,
        "delayMs": fault.delayMs >= 1,
        "jitterMs": fault.jitterMs >= 1,
        "drop": fault.drop,
        "reset": fault.reset,
        "empty": fault.empty,
        "malformed": fault.malformed,
        "headers": bool(fault.headers),
        "body": fault.body is not None,
    }
    return {member for member in FAULT_EFFECTS if values[member]}


class FaultIn(BaseModel):
    """A fault rule to add: which calls it matches and what it does to them."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_fault_schema)

    method: HttpMethod | None = Field(default=None, description="Any method when omitted.")
    path: Annotated[str, StringConstraints(min_length=1, max_length=2048), NoNul] = Field(
        description=(
            "Glob on the decoded path, e.g. /Analytics/v1/objects/*; a percent-encoded "
            "path (%23 for #) is decoded first."
        )
    )
    status: int | None = Field(
        default=None,
        ge=200,
        le=599,
        description=(
            "Answer this status: in the vendor's envelope from 400 up, or as the status of a "
            "custom `body`, a `malformed` answer or an `empty` one."
        ),
    )
    message: Annotated[str, StringConstraints(max_length=500), NoNul] | None = None
    delayMs: int = Field(default=0, ge=0, le=60_000)  # noqa: N815 - JSON member names
    jitterMs: int = Field(  # noqa: N815
        default=0, ge=0, le=60_000, description="Add a random delay of 0 to jitterMs."
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_INT,
        description="Seed of the jitter's random numbers: the same delays in the same order.",
    )
    drop: JsonBool = Field(default=False, description="Close the connection without an answer.")
    reset: JsonBool = Field(default=False, description="Reset the connection (TCP RST), no answer.")
    empty: JsonBool = Field(
        default=False, description="Send the status line only, then close the connection."
    )
    malformed: JsonBool = Field(
        default=False, description="Answer a body that is not JSON, as application/json."
    )
    headers: dict[HeaderName, HeaderValue] | None = Field(
        default=None,
        max_length=32,
        description="Extra response headers, e.g. Retry-After, on the answer the rule makes.",
    )
    body: Annotated[str, StringConstraints(max_length=65_536)] | None = Field(
        default=None, description="Answer this body as is (status 200 unless `status`)."
    )
    times: int | None = Field(
        default=None, ge=1, le=MAX_INT, description="Next N matching calls; omitted: until removed."
    )

    _integers = field_validator("status", "delayMs", "jitterMs", "seed", "times", mode="before")(
        _json_integer
    )

    @property
    def connection(self) -> str | None:
        """What the rule does to the connection, if anything."""
        return next((kind for kind in CONNECTION_FAULTS if getattr(self, kind)), None)

    @model_validator(mode="after")
    def _has_effect(self) -> FaultIn:
        effects = _effects(self)
        if not effects:
            raise ValueError(
                "a fault needs a status, a delayMs or jitterMs, drop, reset, empty, malformed, "
                "headers or body"
            )
        connection = [kind for kind in CONNECTION_FAULTS if kind in effects]
        if len(connection) > 1:
            raise ValueError(f"{' and '.join(connection)} exclude each other")
        for one, other in EXCLUSIVE_EFFECTS:
            if one in effects and other in effects:
                if one in CONNECTION_FAULTS and other in ("malformed", "body", "headers"):
                    raise ValueError(f"{one} sends no body and no headers")
                raise ValueError(f"{one} and {other} exclude each other")
        if (
            self.status is not None
            and self.status < 400
            and not effects.intersection(_LOW_STATUS_ANSWERS)
        ):
            raise ValueError("a status below 400 needs a body, malformed or empty")
        if self.seed is not None and self.jitterMs == 0:
            raise ValueError("seed needs a jitterMs")
        if self.headers and {name.lower() for name in self.headers} & FRAMING_HEADERS:
            raise ValueError("headers may not set Content-Length, Transfer-Encoding or Connection")
        return self


class StateFault(FaultIn):
    """A fault rule in a state document: `GET /_mock/state` gives `id` and `remaining` back."""

    id: int | None = Field(default=None, description="Ignored: rules get new ids on import.")
    remaining: int | None = Field(default=None, ge=1, le=MAX_INT, description="Read as `times`.")

    _state_integers = field_validator("id", "remaining", mode="before")(_json_integer)

    @property
    def calls(self) -> int | None:
        """How many calls the imported rule holds for; None until removed."""
        return self.times if self.times is not None else self.remaining


class Fault(BaseModel):
    """A stored fault rule."""

    id: int
    method: str | None
    path: str
    status: int | None
    message: str | None
    delayMs: int  # noqa: N815
    jitterMs: int  # noqa: N815
    seed: int | None
    drop: bool
    reset: bool
    empty: bool
    malformed: bool
    headers: dict[str, str] | None
    body: str | None
    remaining: int | None = Field(description="Calls left; null until removed.")


def _state_user_schema(schema: JsonDict) -> None:
    properties = cast(dict[str, JsonDict], schema["properties"])
    # Python's `$` also matches before a final newline, which the server refuses.
    properties["name"]["pattern"] = f"^[^:\\s{CONTROL_CHARACTERS}]+(?![\\s\\S])"
    properties["passwordHash"]["description"] = (
        "A pbkdf2_sha256, sha512_crypt or sha256_crypt hash, as GET /_mock/state exports it."
    )
    schema["oneOf"] = [
        {"required": [member], "properties": {member: {"type": "string"}}}
        for member in ("password", "passwordHash")
    ]


class StateUser(BaseModel):
    """An account in the exported state; the password only as its hash."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_state_user_schema)

    name: UserName
    passwordHash: str | None = Field(default=None, repr=False)  # noqa: N815
    password: str | None = Field(default=None, repr=False, min_length=1)
    permissions: list[Permission] = Field(default_factory=list)
    failedLogins: int = Field(default=0, ge=0, le=MAX_INT)  # noqa: N815
    locked: JsonBool = False

    _user_integers = field_validator("failedLogins", mode="before")(_json_integer)


class State(BaseModel):
    """The whole emulated state that `/_mock/state` exports and imports."""

    model_config = ConfigDict(extra="forbid")

    settings: list[SeedSetting] = Field(min_length=1)
    users: list[StateUser] = Field(default_factory=list)
    maintenance: JsonBool = False
    faults: list[StateFault] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> State:
        check_unique(self.settings, (user.name for user in self.users))
        return self


class Maintenance(BaseModel):
    """The maintenance switch."""

    model_config = ConfigDict(extra="forbid")

    enabled: JsonBool


class JournalEntry(BaseModel):
    """One emulated API call as the client made it, secrets redacted."""

    id: int
    time: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: str | None
    json_: Any = Field(
        alias="json", description="The body parsed as JSON, passwords as ***; null if none."
    )
    status: int
    durationMs: float  # noqa: N815


class TestMailRecord(BaseModel):
    """One test-mail attempt, without the password."""

    __test__ = False
    jobId: str  # noqa: N815
    created: str
    completed: str
    mode: Literal["smtp", "capture"]
    hostname: str
    portNumber: int  # noqa: N815
    secureConnection: str  # noqa: N815
    authenticationEnabled: bool  # noqa: N815
    userId: str | None  # noqa: N815
    senderAddress: str  # noqa: N815
    destinationAddresses: list[str]  # noqa: N815
    state: Literal["success", "failed"]
    failureKind: str | None  # noqa: N815
    detail: str
    content: str = Field(description="The message as built: headers and body.")


class MailFailureIn(BaseModel):
    """The next test mails end as a failed Job with this `failureKind`, in either mode."""

    model_config = ConfigDict(extra="forbid")

    failureKind: FailureKind  # noqa: N815
    times: int | None = Field(
        default=None, ge=1, le=MAX_INT, description="Next N test mails; omitted: until removed."
    )

    _integers = field_validator("times", mode="before")(_json_integer)


class MailFailure(BaseModel):
    """A stored test-mail failure."""

    id: int
    failureKind: str  # noqa: N815
    remaining: int | None = Field(description="Test mails left; null until removed.")


class ResetDone(BaseModel):
    """The answer of `POST /_mock/reset`."""

    reset: Literal[True]


class UnlockedUser(BaseModel):
    """The answer of an unlock: the account, no longer locked."""

    name: str
    locked: Literal[False]


class Health(BaseModel):
    """A health probe's answer."""

    status: Literal["ok", "ready", "unavailable"]
