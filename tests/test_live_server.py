"""The real server: `python -m analytics_mock serve` under uvicorn on 127.0.0.1, real sockets.

Each server runs from a scratch directory (not the repository), on a port found by binding port
0, over a SQLite file in that directory; every process is stopped in the fixture's teardown.
"""

from __future__ import annotations

import base64
import json
import socket
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from analytics_mock.crypto import SecretBox
from analytics_mock.settings import Settings
from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH, basic
from tests.support.servers import ServerProcess, free_port, start_server_process

pytestmark = pytest.mark.live

READY_TIMEOUT = 15.0
CLIENT_TIMEOUT = 10.0


def hsso_token(response: httpx.Response) -> str:
    """The token of a `WWW-Authenticate: HSSO <token>` header."""
    header: str = response.headers.get("www-authenticate", "")
    scheme, _, token = header.partition(" ")
    assert scheme == "HSSO", response.headers
    assert token
    return token


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


StartServer = Callable[..., ServerProcess]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start servers (not waiting for them); every one is stopped at teardown."""
    started: list[ServerProcess] = []

    def start(
        *args: str, env: Mapping[str, str] | None = None, database: Path | None = None
    ) -> ServerProcess:
        database = database or tmp_path / "db.sqlite"
        server = start_server_process(
            tmp_path,
            "--database-url",
            f"sqlite:///{database}",
            *args,
            env=env,
            index=len(started),
            ready_timeout=READY_TIMEOUT,
            client_timeout=CLIENT_TIMEOUT,
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def test_free_port_can_be_bound_again() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_startup_banner_shows_the_configuration_with_secrets_masked(
    start_server: StartServer, tmp_path: Path, log_format: str
) -> None:
    server = start_server(
        "--log-format",
        log_format,
        "--log-level",
        "debug",  # the whole configuration is logged at debug, one summary line at info
        env={
            "ANALYTICS_MOCK_SECRET_KEY": "topsecret-key",
            "ANALYTICS_MOCK_CONTROL_TOKEN": "topsecret-token",
        },
    )
    server.wait_ready()
    with server.client() as http:
        assert http.get(SETTINGS_PATH, headers=ADMIN).status_code == 200
    assert server.stop() == 0
    output = server.output()
    assert "topsecret" not in output

    if log_format == "text":
        lines = server.stderr().splitlines()
        banner = {
            line.split(" config ", 1)[1].split(" = ", 1)[0]: line.split(" = ", 1)[1]
            for line in lines
            if " config " in line and " = " in line
        }
        access: list[object] = [line for line in lines if "GET " + SETTINGS_PATH in line]
    else:
        records = []
        for line in server.stderr().splitlines():
            record = json.loads(line)  # every line is one JSON object
            assert isinstance(record, dict)
            assert {"time", "level", "logger", "message"} <= set(record)
            records.append(record)
        banner = {r["setting"]: str(r["value"]) for r in records if "setting" in r}
        access = [r for r in records if "GET " + SETTINGS_PATH in r["message"]]
    # The effective configuration: every setting, secrets masked, the URL shown.
    assert set(banner) == set(Settings.model_fields)
    assert banner["secret_key"] == "********"
    assert banner["database_url"] == f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert banner["log_format"] == log_format
    assert banner["port"] == str(server.port)
    if "control_token" in banner:
        assert banner["control_token"] == "********"
    assert access, "no access log line for the request"


def test_change_survives_a_restart(start_server: StartServer) -> None:
    first = start_server()
    first.wait_ready()
    change = {"hostname": "mail.example.com", "portNumber": 587}
    with first.client() as http:
        response = http.put(OBJECT_PATH, json=change, headers=ADMIN)
        assert response.status_code == 200, response.text
        assert response.json()["hostname"] == "mail.example.com"
    assert first.stop() == 0, first.output()

    second = start_server()
    second.wait_ready()
    with second.client() as http:
        listed = http.get(SETTINGS_PATH, headers=ADMIN)
    assert listed.status_code == 200
    [setting] = listed.json()["data"]
    assert setting["instanceID"] == "mailServerSetting#0"
    assert setting["hostname"] == "mail.example.com"
    assert setting["portNumber"] == 587


def test_two_processes_share_one_database_and_its_sessions(start_server: StartServer) -> None:
    # Both start at once: their start-up migrations and seeding race on the fresh file.
    one = start_server()
    two = start_server()
    one.wait_ready()
    two.wait_ready()
    with one.client() as http_one, two.client() as http_two:
        issued = http_one.get(SETTINGS_PATH, headers=ADMIN)
        assert issued.status_code == 200
        token = hsso_token(issued)

        bogus = http_two.get(SETTINGS_PATH, headers={"Authorization": "HSSO not-a-token"})
        assert bogus.status_code == 401
        accepted = http_two.get(SETTINGS_PATH, headers={"Authorization": f"HSSO {token}"})
        assert accepted.status_code == 200, accepted.text
        assert hsso_token(accepted) == token

        # A write through one process is what the other one reads.
        changed = http_two.put(
            OBJECT_PATH,
            json={"hostname": "relay.example.com"},
            headers={"Authorization": f"HSSO {token}"},
        )
        assert changed.status_code == 200, changed.text
        seen = http_one.get(SETTINGS_PATH, headers={"Authorization": f"HSSO {token}"})
        assert seen.status_code == 200
        assert seen.json()["data"][0]["hostname"] == "relay.example.com"


SMTP_PASSWORD = "Smtp-Plain-Zq7Xw3Vu"
WRONG_PASSWORD = "Wrong-Guess-Kp4Rt8Ny"
USER_PASSWORD = "Carol-Plain-Hm2Lb9Js"


def test_no_secret_reaches_the_logs_or_the_database(
    start_server: StartServer, tmp_path: Path
) -> None:
    users_file = tmp_path / "users.json"
    users_file.write_text(
        json.dumps(
            {
                "users": [
                    {"name": "carol", "password": USER_PASSWORD, "permissions": ["Admin"]},
                    {"name": "dave", "password": USER_PASSWORD + "-d", "permissions": ["Admin"]},
                ]
            }
        )
    )
    database = tmp_path / "db.sqlite"
    server = start_server(
        "--log-level",
        "debug",
        "--users-file",
        str(users_file),
        "--account-lock-num",
        "3",
    )
    server.wait_ready()
    tokens: set[str] = set()

    def call(http: httpx.Client, method: str, headers: dict[str, str], body: object = None) -> int:
        path = OBJECT_PATH if method == "PUT" else SETTINGS_PATH
        response = http.request(method, path, headers=headers, json=body)
        if response.headers.get("www-authenticate", "").startswith("HSSO "):
            tokens.add(hsso_token(response))
        return response.status_code

    with server.client() as http:
        assert call(http, "GET", ADMIN) == 200
        update = {
            "authenticationEnabled": True,
            "userId": "mailer",
            "updatePassword": True,
            "password": b64(SMTP_PASSWORD),
        }
        assert call(http, "PUT", ADMIN, update) == 200
        # Refused: the password is in the body, but nothing may be stored or logged.
        assert call(http, "PUT", ADMIN, {**update, "portNumber": 0}) == 400
        # Cut inside the password string: the whole Base64 is there, the quote and brace not.
        truncated = json.dumps(update)[:-2]
        assert truncated.endswith(b64(SMTP_PASSWORD))
        response = http.put(
            OBJECT_PATH,
            content=truncated.encode(),
            headers={**ADMIN, "Content-Type": "application/json"},
        )
        assert response.status_code == 400
        for _ in range(3):
            assert call(http, "GET", basic("system", WRONG_PASSWORD)) == 401
            assert call(http, "GET", basic("dave", WRONG_PASSWORD)) == 401
        # dave is locked now: even his right password is refused.
        assert call(http, "GET", basic("dave", USER_PASSWORD + "-d")) == 401
        assert call(http, "GET", basic("carol", USER_PASSWORD)) == 200
        assert len(tokens) == 2
        for token in sorted(tokens):
            assert call(http, "GET", {"Authorization": f"HSSO {token}"}) == 200
        listed = http.get(SETTINGS_PATH, headers=ADMIN).json()["data"][0]
        assert listed["authenticationEnabled"] is True
        assert listed["userId"] == "mailer"

    plaintexts = [SMTP_PASSWORD, WRONG_PASSWORD, USER_PASSWORD]
    encoded = [
        b64(SMTP_PASSWORD),
        b64(WRONG_PASSWORD),
        b64(USER_PASSWORD),
        b64(f"system:{WRONG_PASSWORD}"),
        b64(f"dave:{WRONG_PASSWORD}"),
        b64(f"carol:{USER_PASSWORD}"),
        b64("system:manager"),
    ]

    def database_bytes() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in tmp_path.glob(database.name + "*")}

    # While the server runs, recent commits may still sit in the -wal file.
    running = database_bytes()
    assert f"{database.name}-wal" in running
    assert server.stop() == 0
    stopped = database_bytes()

    # The scan below is not vacuous: the SMTP password was written, encrypted under the key file.
    with closing(sqlite3.connect(database)) as conn:
        (ciphertext,) = conn.execute("SELECT password_encrypted FROM email_settings").fetchone()
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if "journal" in tables:  # the request journal, when there is one, saw every call
            assert conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0] >= 10
    key = (tmp_path / (database.name + ".key")).read_bytes().strip()
    assert SecretBox(key).decrypt(ciphertext) == SMTP_PASSWORD.encode()

    output = server.output()
    assert "DEBUG" in output, "the server did not log at debug level"
    for secret in [*plaintexts, *encoded, "system:manager", *tokens]:
        assert secret not in output, f"{secret!r} in the server's output"
    for files in (running, stopped):
        for name, content in files.items():
            for secret in [*plaintexts, *encoded, *tokens]:
                assert secret.encode() not in content, f"{secret!r} in {name}"


def test_refused_body_leaves_no_password_in_the_database(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server()
    server.wait_ready()
    secrets = {
        "application/x-www-form-urlencoded": b64(SMTP_PASSWORD),
        "application/json": b64(WRONG_PASSWORD),
    }
    bodies = {
        "application/x-www-form-urlencoded": "updatePassword=true&password={}",
        "application/json": "{{'updatePassword': true, 'password': '{}'}}",
    }
    with server.client() as http:
        for content_type, template in bodies.items():
            response = http.put(
                OBJECT_PATH,
                content=template.format(secrets[content_type]).encode(),
                headers={**ADMIN, "Content-Type": content_type},
            )
            assert response.status_code in (400, 415)
    assert server.stop() == 0
    found = {
        content_type
        for path in tmp_path.glob("db.sqlite*")
        for content_type, secret in secrets.items()
        if secret.encode() in path.read_bytes()
    }
    assert found == set(), f"passwords of {sorted(found)} bodies are in the database"


def test_two_processes_share_faults_maintenance_and_journal(
    start_server: StartServer, database_url: str
) -> None:
    # Two real server processes over one database: SQLite file, and PostgreSQL when configured.
    env = {"ANALYTICS_MOCK_SECRET_KEY": "shared-key-for-both"}
    one = start_server("--database-url", database_url, env=env)
    two = start_server("--database-url", database_url, env=env)
    one.wait_ready()
    two.wait_ready()
    with one.client() as first, two.client() as second:
        assert first.delete("/_mock/requests").status_code == 204
        assert first.put(OBJECT_PATH, json={"portNumber": 2601}, headers=ADMIN).status_code == 200
        assert second.put(OBJECT_PATH, json={"portNumber": 2602}, headers=ADMIN).status_code == 200
        # The journal of either process shows the calls that both served.
        for http in (first, second):
            bodies = [e["body"] for e in http.get("/_mock/requests").json()["requests"]]
            assert bodies == ['{"portNumber": 2602}', '{"portNumber": 2601}']
        # A fault set through the first process is honoured by the second, once.
        rule = {"path": "/Analytics/v1/objects/*", "method": "PUT", "status": 500, "times": 1}
        assert first.post("/_mock/faults", json=rule).status_code == 201
        forced = second.put(OBJECT_PATH, json={"portNumber": 2603}, headers=ADMIN)
        assert forced.status_code == 500
        assert forced.json()["messageID"] == "KNAQ25001-E"
        assert first.put(OBJECT_PATH, json={"portNumber": 2604}, headers=ADMIN).status_code == 200
        # Maintenance switched on through the second process holds in the first.
        assert second.put("/_mock/maintenance", json={"enabled": True}).status_code == 200
        assert first.get(SETTINGS_PATH, headers=ADMIN).status_code == 412
        assert first.put("/_mock/maintenance", json={"enabled": False}).status_code == 200
        assert second.get(SETTINGS_PATH, headers=ADMIN).json()["data"][0]["portNumber"] == 2604
