"""`MockControls`: the test-control API under `/_mock/` as Python methods.

The helpers speak HTTP through any `httpx.Client` (a `TestClient` in-process, a plain client over
a real socket), so the in-process emulator and the real server share them. A call that does not
get the status the endpoint answers on success raises `ControlAPIError`.
"""

from __future__ import annotations

import difflib
import fnmatch
import json as jsonlib
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    import httpx

CONTROL_PREFIX = "/_mock"
# The journal keeps at most 1,000,000 entries (`journal_size`): "all" fits in one page.
ALL = 1_000_000
# How many of the calls seen an `assert_requested` failure lists, nearest first.
NEAREST = 5


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

        `path` is matched exactly, decoded (".../mailServerSetting#0") or percent-encoded
        (".../mailServerSetting%230"); `since` is in epoch seconds; `limit` defaults to all.
        Each entry has `method`, `path`, `query`, `headers`, `body` (text), `json` (the body
        parsed, passwords as "***"; None if it is not JSON), `status` and `durationMs`.
        """
        limit = ALL if limit is None else limit
        filters = {"method": method, "path": path, "status": status, "since": since, "limit": limit}
        params = {name: value for name, value in filters.items() if value is not None}
        entries: list[dict[str, Any]] = self._call("GET", "/requests", params=params)["requests"]
        return entries

    def clear_requests(self) -> None:
        """Empty the request journal."""
        self._call("DELETE", "/requests", expect=204)

    def assert_requested(
        self,
        method: str,
        path: str,
        *,
        times: int | None = None,
        json: object = None,
    ) -> list[dict[str, Any]]:
        """Assert that the emulated API got `method path` (`times` times exactly, or at least once).

        `path` is a glob on the decoded path (percent-encoded is fine too); `json`, when given,
        must equal the call's parsed body (passwords read "***"). Returns the matching calls,
        oldest first. The AssertionError lists the nearest calls actually seen.
        """
        wanted_method, wanted_path = method.upper(), unquote(path)
        seen = list(reversed(self.requests()))

        def matches(call: dict[str, Any]) -> bool:
            return (
                call["method"] == wanted_method
                and fnmatch.fnmatchcase(call["path"], wanted_path)
                and (json is None or call.get("json") == json)
            )

        found = [call for call in seen if matches(call)]
        if (len(found) >= 1) if times is None else (len(found) == times):
            return found
        expected = "at least once" if times is None else f"{times} time(s)"
        what = f"{wanted_method} {wanted_path}" + (
            f" with json {jsonlib.dumps(json)}" if json is not None else ""
        )
        raise AssertionError(
            f"expected {what} {expected}, got it {len(found)} time(s)\n"
            + _nearest(seen, wanted_method, wanted_path, json)
        )

    def fault(
        self,
        path: str,
        *,
        method: str | None = None,
        status: int | None = None,
        delay_ms: int = 0,
        jitter_ms: int = 0,
        seed: int | None = None,
        drop: bool = False,
        reset: bool = False,
        empty: bool = False,
        malformed: bool = False,
        headers: dict[str, str] | None = None,
        body: str | None = None,
        times: int | None = None,
        message: str | None = None,
    ) -> dict[str, Any]:
        """Add a fault rule for calls whose decoded path matches the glob `path`; the stored rule.

        - `status` answers that status in the vendor's envelope (`message` its text);
        - `delay_ms` waits first, plus a random 0..`jitter_ms` (the same sequence for a `seed`);
        - `drop` closes the connection, `reset` resets it (TCP RST), `empty` sends the status
          line only: the client gets `httpx.RemoteProtocolError` (`httpx.ReadError` for a
          reset), in-process as over a socket;
        - `malformed` answers a body that is not JSON; `body` answers that text (status 200
          unless `status`); `headers` adds response headers (`{"Retry-After": "5"}`);
        - `times` limits the rule to the next N matching calls.
        """
        rule_body: dict[str, Any] = {"path": path, "delayMs": delay_ms}
        flags = {"drop": drop, "reset": reset, "empty": empty, "malformed": malformed}
        rule_body.update((name, True) for name, on in flags.items() if on)
        optional = {
            "method": method,
            "status": status,
            "times": times,
            "message": message,
            "headers": headers,
            "body": body,
            "seed": seed,
            "jitterMs": jitter_ms or None,
        }
        rule_body.update((name, value) for name, value in optional.items() if value is not None)
        if method is not None:
            rule_body["method"] = method.upper()
        rule: dict[str, Any] = self._call("POST", "/faults", expect=201, json=rule_body)
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

    def fail_test_mails(self, kind: str, *, times: int | None = None) -> dict[str, Any]:
        """The next test mails (`times` of them, or all) end as a failed Job of `failureKind`
        `kind` ("connection_refused", "auth_rejected", "timeout", ...), in either mode."""
        document: dict[str, Any] = {"failureKind": kind}
        if times is not None:
            document["times"] = times
        failure: dict[str, Any] = self._call(
            "POST", "/test-mail-failures", expect=201, json=document
        )
        return failure

    def clear_test_mail_failures(self) -> None:
        """Test mails go through again."""
        self._call("DELETE", "/test-mail-failures", expect=204)

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


def _nearest(seen: list[dict[str, Any]], method: str, path: str, json: object) -> str:
    """The calls most like the one asked for, one a line, nearest first."""
    if not seen:
        return "no call to the emulated API was journalled"

    def score(call: dict[str, Any]) -> float:
        likeness = difflib.SequenceMatcher(None, call["path"], path).ratio()
        likeness += 1.0 if call["method"] == method else 0.0
        if json is not None:
            likeness += 1.0 if call.get("json") == json else 0.0
        return likeness

    nearest = sorted(seen, key=score, reverse=True)[:NEAREST]
    lines = [f"nearest of the {len(seen)} call(s) seen:"]
    for call in nearest:
        line = f"  {call['method']} {call['path']} -> {call['status']}"
        if call.get("body") is not None:
            line += f" body {call['body'][:200]}"
        lines.append(line)
    return "\n".join(lines)
