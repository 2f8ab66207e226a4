"""The network edge of a real server: Host and Origin checks, the control token, proxy headers.

Binds beyond loopback happen only inside a private network namespace made for the test
(`unshare -rn`, loopback alone up), where 0.0.0.0 reaches nothing but that namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH
from tests.support.servers import running_server

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[1]
ACTION = "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def test_a_loopback_server_refuses_rebinding_and_cross_site_calls(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "e.db")
    with running_server(tmp_path, "--database-url", url) as server, server.client() as http:
        changed = http.put(OBJECT_PATH, json={"portNumber": 2525}, headers=ADMIN)
        assert changed.status_code == 200, changed.text
        # DNS rebinding: the browser sends the attacker's name as Host.
        for path, headers in (
            (SETTINGS_PATH, {**ADMIN, "Host": "rebind.attacker.example:22015"}),
            ("/_mock/state", {"Host": "rebind.attacker.example"}),
        ):
            refused = http.get(path, headers=headers)
            assert refused.status_code == 403, refused.text
            assert refused.json()["messageID"] == "KNAQ20302-E"
        # A page elsewhere posts to the control API: refused, and nothing was reset.
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            refused = http.post("/_mock/reset", headers=headers)
            assert refused.status_code == 403, refused.text
            assert refused.json()["messageID"] == "KNAQ20303-E"
        stored = http.get(SETTINGS_PATH, headers=ADMIN).json()["data"][0]
        assert stored["portNumber"] == 2525
        assert http.post("/_mock/reset").status_code in (200, 204)


def test_an_allowed_host_is_answered(tmp_path: Path) -> None:
    with (
        running_server(
            tmp_path,
            "--database-url",
            sqlite_url(tmp_path / "a.db"),
            "--allowed-host",
            "mock.ci.example.test",
            "--allowed-host",
            ".svc.example.test",
        ) as server,
        server.client() as http,
    ):
        for host in ("mock.ci.example.test:22015", "a.svc.example.test", "localhost"):
            response = http.get(SETTINGS_PATH, headers={**ADMIN, "Host": host})
            assert response.status_code == 200, (host, response.text)
        response = http.get(SETTINGS_PATH, headers={**ADMIN, "Host": "other.example.test"})
        assert response.status_code == 403


@pytest.mark.parametrize("trusted", [False, True])
def test_proxy_headers_are_believed_only_from_listed_proxies(tmp_path: Path, trusted: bool) -> None:
    args = ["--database-url", sqlite_url(tmp_path / "p.db")]
    if trusted:
        args += ["--forwarded-allow-ips", "127.0.0.1"]
    forged = {**ADMIN, "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.77"}
    with running_server(tmp_path, *args) as server, server.client() as http:
        response = http.get(ACTION, headers=forged)
        assert response.status_code == 200, response.text
        href = response.json()["href"]
    log = server.output()
    if trusted:
        assert href.startswith("https://")
        assert "203.0.113.77" in log
    else:
        assert href.startswith(f"http://127.0.0.1:{server.port}/")
        assert "203.0.113.77" not in log


NAMESPACE_SCRIPT = textwrap.dedent(
    """
    import json, re, subprocess, sys
    from pathlib import Path

    import httpx

    from tests.support.helpers import ADMIN, SETTINGS_PATH
    from tests.support.servers import start_server_process

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    directory = Path(sys.argv[1])
    results = {}

    def run(name, *args, env=None):
        server = start_server_process(
            directory, "--database-url", f"sqlite:///{directory / (name + '.db')}", *args,
            host="0.0.0.0", env=env, index=len(results),
        )
        found = results[name] = {}
        try:
            server.wait_ready()
            with httpx.Client(base_url=server.url, timeout=10) as http:
                found["anonymous"] = http.get("/_mock/state").status_code
                found["wrong"] = http.get(
                    "/_mock/state", headers={"Authorization": "Bearer wrong"}
                ).status_code
                tokens = re.findall(r"Authorization: Bearer (\\S+)", server.stderr())
                found["tokens_logged"] = len(tokens)
                token = tokens[0] if tokens else (env or {}).get("ANALYTICS_MOCK_CONTROL_TOKEN")
                if token:
                    bearer = {"Authorization": f"Bearer {token}"}
                    found["with_token"] = http.get("/_mock/state", headers=bearer).status_code
                    http.get(SETTINGS_PATH, headers=bearer)  # journalled, redacted
                    found["token_in_journal"] = token in http.get(
                        "/_mock/requests", headers=bearer
                    ).text
                found["service_name"] = http.get(
                    SETTINGS_PATH, headers={**ADMIN, "Host": "analytics-mock:22015"}
                ).status_code
                found["container_ip"] = http.get(
                    SETTINGS_PATH, headers={**ADMIN, "Host": "172.18.0.5:22015"}
                ).status_code
                found["dotted_name"] = http.get(
                    SETTINGS_PATH, headers={**ADMIN, "Host": "rebind.attacker.example"}
                ).status_code
            server.stop()
            output = server.output()
            found["token_occurrences"] = output.count(token) if token else 0
            found["open_warning"] = "open to anyone" in output
        finally:
            server.close()

    run("generated")
    run("given", env={"ANALYTICS_MOCK_CONTROL_TOKEN": "pipeline-chosen-token-0123456789"})
    run("opted_out", "--no-control-token")
    print(json.dumps(results))
    """
)


# -r maps the caller to root in a new user namespace, so that this works without root too.
NAMESPACE = ["unshare", "-rn"]


def namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run([*NAMESPACE, "true"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not namespaces_work(), reason="no private network namespace (unshare -rn)")
def test_an_open_bind_locks_the_control_api_with_a_token(tmp_path: Path) -> None:
    script = tmp_path / "in_namespace.py"
    script.write_text(NAMESPACE_SCRIPT)
    result = subprocess.run(
        [*NAMESPACE, sys.executable, str(script), str(tmp_path)],
        cwd=ROOT,
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])),
        },
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    generated = found["generated"]
    assert generated["anonymous"] == generated["wrong"] == 401
    assert generated["tokens_logged"] == 1
    assert generated["with_token"] == 200
    assert generated["token_in_journal"] is False
    # The token is written once, in the start-up message, and nowhere else.
    assert generated["token_occurrences"] == 1
    given = found["given"]
    assert given["anonymous"] == given["wrong"] == 401
    assert given["tokens_logged"] == 0
    assert given["with_token"] == 200
    assert given["token_occurrences"] == 0
    opted_out = found["opted_out"]
    assert opted_out["anonymous"] == 200
    assert opted_out["open_warning"] is True
    for run in found.values():
        # Compose service names and container addresses are answered, dotted names are not.
        assert run["service_name"] == run["container_ip"] == 200
        assert run["dotted_name"] == 403
