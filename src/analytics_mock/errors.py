"""Domain errors: each carries its HTTP status and a stable vendor-shaped message ID.

The vendor documents only `generic error` (a body that is not JSON); every other ID follows its
`KNAQnnnnn-E` shape and is the emulator's own catalogue, listed in the README.
"""

from __future__ import annotations

from collections.abc import Mapping


class DomainError(Exception):
    """An error the client caused or must see, rendered into the vendor's error envelope."""

    status: int = 500
    message_id: str = "KNAQ29999-E"

    def __init__(
        self,
        text: str,
        *,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
        message_id: str | None = None,
    ) -> None:
        """`status` and `message_id` stand in for the class's, for an error of no kind."""
        super().__init__(text)
        self.text = text
        self.headers = dict(headers or {})
        if status is not None:
            self.status = status
        if message_id is not None:
            self.message_id = message_id


class MalformedBody(DomainError):
    """The body is empty or not JSON: the vendor's own `generic error`."""

    status = 400
    message_id = "generic error"


class InvalidBody(DomainError):
    """The body is JSON but not an object of the expected shape."""

    status = 400
    message_id = "KNAQ20001-E"


class UnknownMember(DomainError):
    """The body has a member the resource does not know."""

    status = 400
    message_id = "KNAQ20002-E"


class InvalidMember(DomainError):
    """A member has a value of the wrong type or outside its rule."""

    status = 400
    message_id = "KNAQ20003-E"


class MissingMember(DomainError):
    """A member that another member makes necessary is absent."""

    status = 400
    message_id = "KNAQ20004-E"


class InvalidParameter(DomainError):
    """A query or path parameter is out of range or does not parse."""

    status = 400
    message_id = "KNAQ20005-E"


class MalformedRequest(DomainError):
    """A request that is not valid HTTP/1.1, refused before it reaches the app."""

    status = 400
    message_id = "KNAQ20006-E"

    def __init__(self) -> None:
        super().__init__("The request is not valid HTTP.")


class RequestHeadTooLarge(DomainError):
    """A request line and headers larger than the server reads."""

    status = 400
    message_id = "KNAQ20007-E"


class AuthenticationFailed(DomainError):
    """No, wrong, unknown, expired or locked credentials; the text never says which."""

    status = 401
    message_id = "KNAQ20101-E"

    def __init__(self) -> None:
        super().__init__(
            "Authentication failed.", headers={"WWW-Authenticate": 'Basic realm="Analytics"'}
        )


class PermissionDenied(DomainError):
    """Authenticated, but without the permission the operation needs."""

    status = 403
    message_id = "KNAQ20301-E"


class ResourceNotFound(DomainError):
    """No resource at this path."""

    status = 404
    message_id = "KNAQ20401-E"


class ObjectNotFound(DomainError):
    """The path names an object that does not exist."""

    status = 404
    message_id = "KNAQ20402-E"


class MethodNotAllowed(DomainError):
    """The resource exists but not with this method."""

    status = 405
    message_id = "KNAQ20501-E"


class NotAcceptable(DomainError):
    """The `Accept` header excludes application/json."""

    status = 406
    message_id = "KNAQ20601-E"


class ServerUnavailable(DomainError):
    """The maintenance switch is on."""

    status = 412
    message_id = "KNAQ21201-E"

    def __init__(self) -> None:
        super().__init__("The server is not available.")


class BodyTooLarge(DomainError):
    """The body is over the configured size limit."""

    status = 413
    message_id = "KNAQ21301-E"


class UnsupportedMediaType(DomainError):
    """A PUT or POST without `Content-Type: application/json`, or with a content coding."""

    status = 415
    message_id = "KNAQ21501-E"


class UnsupportedTransferCoding(DomainError):
    """A body in a transfer coding other than chunked alone (RFC 9112's 501) [pick]."""

    status = 501
    message_id = "KNAQ25101-E"

    def __init__(self) -> None:
        super().__init__("The Transfer-Encoding of the request must be chunked alone.")


class OutOfDescriptors(DomainError):
    """The process has no file descriptor left for the database (a connection flood) [pick].

    Transient, as the connection cap's answer is: the same 503 and message ID, `Retry-After`.
    """

    status = 503
    message_id = "KNAQ25301-E"

    def __init__(self) -> None:
        super().__init__(
            "The server has too many open files; try again later.",
            headers={"Retry-After": "1"},
        )


class StorageFull(DomainError):
    """The database's disk is full: the change was not stored [pick].

    Not an unexpected failure (500): the client can tell it apart, and it lasts until the
    operator frees space, as `/readyz` reports.
    """

    status = 503
    message_id = "KNAQ25302-E"

    def __init__(self) -> None:
        super().__init__("The server cannot store the change: the database's disk is full.")


class InternalError(DomainError):
    """An unexpected failure; details go to the log, never to the client."""

    status = 500
    message_id = "KNAQ25001-E"

    def __init__(self) -> None:
        super().__init__("An internal server error occurred.")


CATALOGUE: tuple[type[DomainError], ...] = (
    MalformedBody,
    InvalidBody,
    UnknownMember,
    InvalidMember,
    MissingMember,
    InvalidParameter,
    MalformedRequest,
    RequestHeadTooLarge,
    AuthenticationFailed,
    PermissionDenied,
    ResourceNotFound,
    ObjectNotFound,
    MethodNotAllowed,
    NotAcceptable,
    ServerUnavailable,
    BodyTooLarge,
    UnsupportedMediaType,
    InternalError,
)


def error_for_status(status: int, text: str) -> DomainError:
    """An error answering `status`, with its catalogue kind's message ID when it has one."""
    kind = next((k for k in CATALOGUE if k.status == status), None)
    return DomainError(text, status=status, message_id=kind.message_id if kind else None)
