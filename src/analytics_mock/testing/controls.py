"""`MockControls`: the test-control API under `/_mock/` as Python methods.

The helpers speak HTTP through any `httpx.Client` (a `TestClient` in-process, a plain client over
a real socket), so the in-process emulator and the real server share them. A call that does not
get the status the endpoint answers on success raises `ControlAPIError`.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import httpx

CONTROL_PREFIX = "/_mock"


class ControlAPIError(Exception):
    """A `/_mock/` call answered something other than its success status."""

    def __init__(self, method: str, path: str, status: int, expected: int, body: str) -> None:
        super().__init__(f"{method} {path} answered {status} (expected {expected}): {body}")
        self.method = method
        self.path = path
        self.status = status
        self.expected = expected
        self.body = body


class MockControls:
    """The `/_mock/` helpers; `http` is a client whose base URL is the emulator's root."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def _call(
        self,
        method: str,
        path: str,
        *,
        expect: int = 200,
        json: object = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        url = CONTROL_PREFIX + path
        response = self._http.request(method, url, json=json, params=params)
        if response.status_code != expect:
            raise ControlAPIError(method, url, response.status_code, expect, response.text)
        return response.json() if response.content else None

    def reset(self) -> None:
        """Back to the seed: settings, accounts, sessions, journal, faults, maintenance, mails."""
        self._call("POST", "/reset")

    def requests(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Journalled calls to the emulated API matching every filter given, newest first.

        `path` is the decoded path, matched exactly (".../mailServerSetting#0"); `since` is in
        epoch seconds; `limit` defaults to the server's (100).
        """
        filters = {"method": method, "path": path, "status": status, "since": since, "limit": limit}
        params = {name: value for name, value in filters.items() if value is not None}
        entries: list[dict[str, Any]] = self._call("GET", "/requests", params=params)["requests"]
        return entries

    def clear_requests(self) -> None:
        """Empty the request journal."""
        self._call("DELETE", "/requests", expect=204)

    def fault(
        self,
        path: str,
        *,
        method: str | None = None,
        status: int | None = None,
        delay_ms: int = 0,
        drop: bool = False,
        times: int | None = None,
        message: str | None = None,
    ) -> dict[str, Any]:
        """Add a fault rule for calls whose decoded path matches the glob `path`; the stored rule.

        `status` answers that status in the vendor's envelope, `delay_ms` waits first, `drop`
        closes the connection (in-process: the client gets `ConnectionDroppedError`); `times`
        limits the rule to the next N matching calls.
        """
        body: dict[str, Any] = {"path": path, "delayMs": delay_ms, "drop": drop}
        optional = {"method": method, "status": status, "times": times, "message": message}
        body.update((name, value) for name, value in optional.items() if value is not None)
        if method is not None:
            body["method"] = method.upper()
        rule: dict[str, Any] = self._call("POST", "/faults", expect=201, json=body)
        return rule

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._call("DELETE", "/faults", expect=204)

    def maintenance(self, enabled: bool) -> MaintenanceSwitch:
        """Turn maintenance (412 on every emulated call) on or off, now.

        Also a context manager that puts back the previous value on exit::

            with mock.maintenance(True):
                ...  # every call to /Analytics/ answers 412
        """
        previous: bool = self._call("GET", "/maintenance")["enabled"]
        self._call("PUT", "/maintenance", json={"enabled": enabled})
        return MaintenanceSwitch(self, enabled=enabled, previous=previous)

    def test_mails(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The recorded test-mail attempts, newest first (never the password)."""
        params = {"limit": limit} if limit is not None else None
        mails: list[dict[str, Any]] = self._call("GET", "/test-mails", params=params)["testMails"]
        return mails

    @property
    def state(self) -> dict[str, Any]:
        """The exported state: `settings`, `users`, `maintenance`, `faults`."""
        exported: dict[str, Any] = self._call("GET", "/state")
        return exported

    @state.setter
    def state(self, document: dict[str, Any]) -> None:
        """Import a state document (the shape `state` returns); every session ends."""
        self._call("PUT", "/state", json=document)

    def unlock(self, name: str) -> None:
        """Unlock an account locked by failed logins."""
        self._call("POST", f"/users/{quote(name, safe='')}/unlock")


class MaintenanceSwitch:
    """What `maintenance()` returns: already applied; a context manager that restores."""

    def __init__(self, controls: MockControls, *, enabled: bool, previous: bool) -> None:
        self.enabled = enabled
        self.previous = previous
        self._controls = controls

    def __enter__(self) -> MaintenanceSwitch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._controls.maintenance(self.previous)
