"""The network edge: which Host and Origin a request may carry, and the control API's token.

Served over a socket, the app sits behind `EdgeGuard` (see `serving.py`); in-process clients
reach no socket, so neither DNS rebinding nor a browser can reach them. The rules
(docs/security.md):

- Host: a loopback bind answers only loopback names and addresses (`localhost`, `*.localhost`,
  127.0.0.0/8, ::1) and the names the operator allows. Any other bind also answers any IP
  address and any single-label name (a Compose service or container name): DNS rebinding needs
  a name the attacker's DNS resolves, which has a dot. A dotted name needs `--allowed-host`.
- Origin: a browser request from another origin (an `Origin` that is not this server's own,
  `null` included, or `Sec-Fetch-Site: cross-site`) is refused, so a web page cannot drive
  the server with the visitor's network position.
- `/_mock/`: with a control token, `Authorization: Bearer <token>`, compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from analytics_mock.api.errors import error_response
from analytics_mock.errors import DomainError, MalformedRequest
from analytics_mock.settings import Settings

CONTROL_PREFIX = "/_mock"
# Probes carry whatever Host an orchestrator chooses, and tell nothing worth protecting.
_PROBES = frozenset({"/healthz", "/readyz"})
# The dashboard's page and assets hold no data (the page asks the control API with the token),
# and a browser cannot send a Bearer token on a navigation.
_OPEN_CONTROL_PATHS = frozenset(
    {CONTROL_PREFIX, CONTROL_PREFIX + "/", "/_mock/ui", "/_mock/ui/app.js", "/_mock/ui/app.css"}
)
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class HostNotAllowed(DomainError):
    """The Host header names a host this server does not answer for [pick]."""

    status = 403
    message_id = "KNAQ20302-E"

    def __init__(self) -> None:
        super().__init__(
            "The Host header names a host this server does not answer for (see --allowed-host)."
        )


class CrossSiteRequest(DomainError):
    """A browser request sent by a page of another origin [pick]."""

    status = 403
    message_id = "KNAQ20303-E"

    def __init__(self) -> None:
        super().__init__("Requests from another site are refused.")


class ControlTokenRequired(DomainError):
    """A control call without the control token: the API's own 401, with a Bearer challenge."""

    status = 401
    message_id = "KNAQ20101-E"

    def __init__(self) -> None:
        super().__init__(
            "Authentication failed.",
            headers={"WWW-Authenticate": 'Bearer realm="analytics-mock control API"'},
        )


def is_loopback_host(host: str) -> bool:
    """Whether a bind address (or Host name) is loopback only."""
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class EdgePolicy:
    """What the guard lets through: built once from the settings."""

    loopback_bind: bool
    allowed_hosts: frozenset[str] = frozenset()
    control_token: bytes | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgePolicy:
        """The policy of a server bound to `settings.host`."""
        token = settings.control_token
        return cls(
            loopback_bind=is_loopback_host(settings.host),
            allowed_hosts=frozenset(settings.allowed_hosts),
            control_token=token.get_secret_value().encode() if token is not None else None,
        )

    def host_allowed(self, name: str) -> bool:
        """Whether a request for host `name` (no port, lower case) is answered."""
        if is_loopback_host(name) or self.operator_allows(name):
            return True
        if self.loopback_bind:
            return False
        if "." not in name:  # a single label: a Compose service, a container's own name
            return True
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            return False
        return True

    def operator_allows(self, name: str) -> bool:
        if "*" in self.allowed_hosts or name in self.allowed_hosts:
            return True
        return any(
            entry.startswith(".") and (name.endswith(entry) or name == entry[1:])
            for entry in self.allowed_hosts
        )


def split_host(value: str) -> str:
    """The host part of a Host header (`name:port`, `[v6]:port`), lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class EdgeGuard:
    """Refuses foreign hosts, foreign sites, and control calls without the token."""

    def __init__(self, app: ASGIApp, policy: EdgePolicy) -> None:
        self.app = app
        self.policy = policy
        # Clients send a handful of distinct Host values: decide each once.
        self._host_allowed = lru_cache(maxsize=256)(self._decide_host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _PROBES:
            await self.app(scope, receive, send)
            return
        error = self._refusal(scope)
        if error is not None:
            await error_response(scope, error)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> DomainError | None:
        host = origin = fetch_site = authorization = None
        repeated = False
        for name, value in scope["headers"]:
            if name == b"host":
                repeated, host = repeated or host is not None, value
            elif name == b"origin":
                repeated, origin = repeated or origin is not None, value
            elif name == b"sec-fetch-site":
                fetch_site = value
            elif name == b"authorization":
                authorization = value
        # Which of two would count is ambiguous (RFC 9112 asks a 400 of two Hosts).
        if repeated:
            return MalformedRequest()
        # HTTP/1.0 clients may send no Host; a browser always does.
        if host is not None and not self._host_allowed(host):
            return HostNotAllowed()
        if fetch_site is not None and fetch_site.strip().lower() == b"cross-site":
            return CrossSiteRequest()
        if origin is not None and not self._same_origin(origin, host):
            return CrossSiteRequest()
        token = self.policy.control_token
        path: str = scope["path"]
        if (
            token is not None
            and (path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"))
            and path not in _OPEN_CONTROL_PATHS
        ):
            scheme, _, given = (authorization or b"").strip().partition(b" ")
            # compare_digest takes as long whatever the bytes; only the lengths may leak.
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), token):
                return ControlTokenRequired()
        return None

    def _decide_host(self, raw: bytes) -> bool:
        try:
            value = raw.decode("ascii")
        except UnicodeDecodeError:
            return False
        host = split_host(value)
        return bool(host) and self.policy.host_allowed(host)

    def _same_origin(self, origin: bytes, host: bytes | None) -> bool:
        """Whether `Origin` is this server as the client addressed it, or an allowed host."""
        try:
            parts = urlsplit(origin.decode("ascii").strip().lower())
        except (UnicodeDecodeError, ValueError):
            return False
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (a sandboxed page, a file) among them
        if host is not None and parts.netloc == host.decode("latin-1").strip().lower():
            return True
        return self.policy.operator_allows(split_host(parts.netloc))
