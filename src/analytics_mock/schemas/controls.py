"""Bodies of the test-control API under `/_mock/`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from analytics_mock.formats import MAX_INT
from analytics_mock.mail import FailureKind
from analytics_mock.schemas.seed import Permission, SeedSetting, UserName, check_unique

NoNul = StringConstraints(pattern=r"^[^\x00]*$")

HttpMethod = Literal["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"]


HeaderName = Annotated[str, StringConstraints(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")]
HeaderValue = Annotated[str, StringConstraints(pattern=r"^[\x20-\x7e\t]{0,1024}$")]
# Headers the server frames the answer with; a fault that set them would break the framing.
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
# What a fault may do to the connection instead of answering: on the wire and, in-process, as
# the httpx error a client would get over a real socket.
CONNECTION_FAULTS = ("drop", "reset", "empty")


class FaultIn(BaseModel):
    """A fault rule to add: which calls it matches and what it does to them."""

    model_config = ConfigDict(extra="forbid")

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
    drop: bool = Field(default=False, description="Close the connection without an answer.")
    reset: bool = Field(default=False, description="Reset the connection (TCP RST), no answer.")
    empty: bool = Field(
        default=False, description="Send the status line only, then close the connection."
    )
    malformed: bool = Field(
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

    @property
    def connection(self) -> str | None:
        """What the rule does to the connection, if anything."""
        return next((kind for kind in CONNECTION_FAULTS if getattr(self, kind)), None)

    @model_validator(mode="after")
    def _has_effect(self) -> FaultIn:
        connection = [kind for kind in CONNECTION_FAULTS if getattr(self, kind)]
        answers = ("status", "drop", "reset", "empty", "malformed", "headers", "body")
        if (
            self.delayMs == 0
            and self.jitterMs == 0
            and not any(getattr(self, name) not in (None, False) for name in answers)
        ):
            raise ValueError(
                "a fault needs a status, a delayMs or jitterMs, drop, reset, empty, malformed, "
                "headers or body"
            )
        if len(connection) > 1:
            raise ValueError(f"{' and '.join(connection)} exclude each other")
        if self.status is not None and self.connection in ("drop", "reset"):
            raise ValueError(f"status and {self.connection} exclude each other")
        if self.connection and (self.malformed or self.body is not None or self.headers):
            raise ValueError(f"{self.connection} sends no body and no headers")
        if self.malformed and self.body is not None:
            raise ValueError("malformed and body exclude each other")
        if (
            self.status is not None
            and self.status < 400
            and not (self.malformed or self.body is not None or self.empty)
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


class StateUser(BaseModel):
    """An account in the exported state; the password only as its hash."""

    model_config = ConfigDict(extra="forbid")

    name: UserName
    passwordHash: str | None = Field(default=None, repr=False)  # noqa: N815
    password: str | None = Field(default=None, repr=False, min_length=1)
    permissions: list[Permission] = Field(default_factory=list)
    failedLogins: int = Field(default=0, ge=0, le=MAX_INT)  # noqa: N815
    locked: bool = False


class State(BaseModel):
    """The whole emulated state that `/_mock/state` exports and imports."""

    model_config = ConfigDict(extra="forbid")

    settings: list[SeedSetting] = Field(min_length=1)
    users: list[StateUser] = Field(default_factory=list)
    maintenance: bool = False
    faults: list[StateFault] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> State:
        check_unique(self.settings, (user.name for user in self.users))
        return self


class Maintenance(BaseModel):
    """The maintenance switch."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool


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


class MailFailure(BaseModel):
    """A stored test-mail failure."""

    id: int
    failureKind: str  # noqa: N815
    remaining: int | None = Field(description="Test mails left; null until removed.")
