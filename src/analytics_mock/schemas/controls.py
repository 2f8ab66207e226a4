"""Bodies of the test-control API under `/_mock/`."""

from __future__ import annotations

from typing import Annotated, Literal, cast

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

from analytics_mock.services.seed import SeedSetting, check_unique_instance_ids
from analytics_mock.services.users import Permission, UserName

# Every integer goes into an INTEGER column.
MAX_INT = 2_147_483_647
NoNul = StringConstraints(pattern=r"^[^\x00]*$")

HttpMethod = Literal["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"]


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
# effect; a rule needs at least one. The document says so as an `anyOf` of these branches.
FAULT_EFFECTS: dict[str, JsonDict] = {
    "status": {"type": "integer"},
    "delayMs": {"type": "integer", "minimum": 1},
    "drop": {"const": True},
}
# Effects that exclude each other.
EXCLUSIVE_EFFECTS: tuple[tuple[str, str], ...] = (("status", "drop"),)


def _has(member: str, schema: JsonDict) -> JsonDict:
    return {"required": [member], "properties": {member: schema}}


def _fault_schema(schema: JsonDict) -> None:
    schema["anyOf"] = [_has(member, rule) for member, rule in FAULT_EFFECTS.items()]
    pairs: list[JsonDict] = [
        {"allOf": [_has(one, FAULT_EFFECTS[one]), _has(other, FAULT_EFFECTS[other])]}
        for one, other in EXCLUSIVE_EFFECTS
    ]
    schema["not"] = pairs[0] if len(pairs) == 1 else cast(JsonDict, {"anyOf": pairs})


def _effects(fault: BaseModel) -> set[str]:
    """The effects `fault` has, by the rules of `FAULT_EFFECTS`."""
    values = {
        "status": getattr(fault, "status", None) is not None,
        "delayMs": getattr(fault, "delayMs", 0) >= 1,
        "drop": getattr(fault, "drop", False) is True,
    }
    return {member for member in FAULT_EFFECTS if values.get(member)}


class FaultIn(BaseModel):
    """A fault rule to add: which calls it matches and what it does to them."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_fault_schema)

    method: HttpMethod | None = Field(default=None, description="Any method when omitted.")
    path: Annotated[str, StringConstraints(min_length=1, max_length=2048), NoNul] = Field(
        description="Glob on the decoded path, e.g. /Analytics/v1/objects/*"
    )
    status: int | None = Field(default=None, ge=400, le=599, description="Answer this status.")
    message: Annotated[str, StringConstraints(max_length=500), NoNul] | None = None
    delayMs: int = Field(default=0, ge=0, le=60_000)  # noqa: N815 - JSON member names
    drop: JsonBool = Field(default=False, description="Close the connection without an answer.")
    times: int | None = Field(
        default=None, ge=1, le=MAX_INT, description="Next N matching calls; omitted: until removed."
    )

    _integers = field_validator("status", "delayMs", "times", mode="before")(_json_integer)

    @model_validator(mode="after")
    def _has_effect(self) -> FaultIn:
        effects = _effects(self)
        if not effects:
            raise ValueError("a fault needs a status, a delayMs or drop")
        for one, other in EXCLUSIVE_EFFECTS:
            if one in effects and other in effects:
                raise ValueError(f"{one} and {other} exclude each other")
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
    drop: bool
    remaining: int | None = Field(description="Calls left; null until removed.")


def _state_user_schema(schema: JsonDict) -> None:
    properties = cast(dict[str, JsonDict], schema["properties"])
    # Python's `$` also matches before a final newline, which the server refuses.
    properties["name"]["pattern"] = "^[^:\\s\\x00-\\x1f\\x7f]+(?![\\s\\S])"
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
        check_unique_instance_ids(self.settings)
        names = [user.name for user in self.users]
        if len(names) != len(set(names)):
            raise ValueError("duplicate user names")
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
