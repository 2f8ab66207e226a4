"""`analytics-mock serve` for real: HTTP and HTTPS from one process, certificates, signals.

Servers run as subprocesses on 127.0.0.1, on ports found free by binding port 0, with bounded
waits, and are always stopped (SIGKILL at the end of the grace) when a test ends.
"""

from __future__ import annotations

import gc
import hashlib
import os
import signal
import socket
import ssl
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from analytics_mock import tls
from analytics_mock.serving import COLLECT_EVERY, export_settings, settle_collector
from analytics_mock.settings import Settings
from tests.support.helpers import ADMIN, SETTINGS_PATH
from tests.support.servers import (
    child_pids,
    clean_env,
    free_port,
    running_server_at_default_host,
    serve_refusal,
    strict_context,
)


def presented_certificate(port: int, server_hostname: str, context: ssl.SSLContext) -> bytes:
    """The DER certificate the server presents, after `context` verified it for the name."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls_socket,
    ):
        der = tls_socket.getpeercert(binary_form=True)
    assert der is not None
    return der


def logged_fingerprint(log: str) -> str:
    """The SHA-256 fingerprint the start-up banner gave."""
    lines = [line for line in log.splitlines() if "SHA-256 fingerprint" in line]
    assert len(lines) == 1, log
    return lines[0].rsplit(" ", 1)[1]


def sha256_fingerprint(der: bytes) -> str:
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


# --- HTTP and HTTPS from one process ------------------------------------------------------------


@pytest.mark.live
def test_http_and_https_from_one_process_with_a_kept_self_signed_certificate(
    tmp_path: Path,
) -> None:
    db = tmp_path / "data" / "mock.db"
    certfile, keyfile = tmp_path / "data" / "mock.db.tls.crt", tmp_path / "data" / "mock.db.tls.key"
    with running_server_at_default_host(
        tmp_path, "--database-url", sqlite_url(db), https=True
    ) as server:
        assert server.https_port is not None
        assert certfile.exists()
        assert keyfile.stat().st_mode & 0o777 == 0o600
        context = strict_context(certfile)
        with httpx.Client(verify=context) as https, httpx.Client() as http:
            secure = https.get(server.https_url + SETTINGS_PATH, headers=ADMIN)
            plain = http.get(server.url + SETTINGS_PATH, headers=ADMIN)
        assert secure.status_code == 200
        assert plain.status_code == 200
        assert secure.json() == plain.json()
        # The names a local client may use are all in the certificate.
        for name in ("localhost", "127.0.0.1", socket.gethostname()):
            der = presented_certificate(server.https_port, name, context)
        cert_der = x509.load_pem_x509_certificate(certfile.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
        assert der == cert_der
        assert logged_fingerprint(server.output()) == sha256_fingerprint(der)
        # One process serves both ports.
        assert child_pids(server.process.pid) == set()
        assert server.stop() == 0
        log = server.output()
    key_body = "".join(keyfile.read_text().splitlines()[1:-1])
    assert key_body[:40] not in log
    assert "PRIVATE KEY" not in log

    # The next start serves the same certificate, so a pinned client keeps working.
    before = (certfile.read_bytes(), keyfile.read_bytes())
    with running_server_at_default_host(
        tmp_path, "--database-url", sqlite_url(db), https=True
    ) as again:
        assert again.https_port is not None
        der = presented_certificate(again.https_port, "localhost", strict_context(certfile))
        assert der == cert_der
        assert logged_fingerprint(again.output()) == sha256_fingerprint(der)
    assert (certfile.read_bytes(), keyfile.read_bytes()) == before


@pytest.mark.live
def test_given_certificate_is_served(tmp_path: Path) -> None:
    given = tls.tls_files(
        Settings(database_url=sqlite_url(tmp_path / "elsewhere" / "x.db"), https_port=0)
    )
    assert given is not None
    db = tmp_path / "mock.db"
    with running_server_at_default_host(
        tmp_path,
        "--database-url",
        sqlite_url(db),
        "--certfile",
        str(given.certfile),
        "--keyfile",
        str(given.keyfile),
        https=True,
    ) as server:
        assert server.https_port is not None
        der = presented_certificate(server.https_port, "localhost", strict_context(given.certfile))
        assert sha256_fingerprint(der) == given.fingerprint == logged_fingerprint(server.output())
        with httpx.Client(verify=strict_context(given.certfile)) as https:
            assert https.get(server.https_url + SETTINGS_PATH, headers=ADMIN).status_code == 200
    assert not (tmp_path / "mock.db.tls.crt").exists()
    assert not (tmp_path / "mock.db.tls.key").exists()


@pytest.mark.live
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_both_ports_cleanly(tmp_path: Path, signum: int) -> None:
    with running_server_at_default_host(
        tmp_path, "--database-url", sqlite_url(tmp_path / "m.db"), https=True
    ) as s:
        assert s.stop(signum) == 0
        log = s.output()
        for port in (s.port, s.https_port):
            with pytest.raises(ConnectionRefusedError), socket.socket() as sock:
                sock.connect(("127.0.0.1", port))
    assert "Traceback" not in log
    assert log.count("Finished server process") == 2


@pytest.mark.live
def test_http_only_without_https_port(tmp_path: Path) -> None:
    with running_server_at_default_host(
        tmp_path, "--database-url", sqlite_url(tmp_path / "m.db")
    ) as server:
        assert httpx.get(server.url + SETTINGS_PATH, headers=ADMIN).status_code == 200
        assert f"serving http://127.0.0.1:{server.port}/Analytics/v1" in server.output()
        assert "https://" not in server.output()
    assert list(tmp_path.glob("*.tls.*")) == []


# --- refusals: one line, no traceback -----------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> tls.TlsFiles:
    """A valid certificate and key, made the way the server makes its own."""
    made = tls.tls_files(
        Settings(database_url=sqlite_url(tmp_path / "pair" / "p.db"), https_port=0)
    )
    assert made is not None
    return made


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--https-port", "{https}", "--certfile", "{cert}"], "give both --certfile and --keyfile"),
        (["--https-port", "{https}", "--keyfile", "{key}"], "give both --certfile and --keyfile"),
        (["--certfile", "{cert}", "--keyfile", "{key}"], "need --https-port"),
        (["--https-port", "{port}"], "--https-port must differ from --port"),
        (
            ["--https-port", "{https}", "--certfile", "{missing}", "--keyfile", "{key}"],
            "cannot read {missing}: No such file or directory",
        ),
        (
            ["--https-port", "{https}", "--certfile", "{cert}", "--keyfile", "{cert}"],
            "holds no PEM private key",
        ),
        (
            ["--https-port", "{https}", "--certfile", "{key}", "--keyfile", "{key}"],
            "holds no PEM certificate",
        ),
        (
            ["--https-port", "{https}", "--certfile", "{cert}", "--keyfile", "{other_key}"],
            "does not belong to the certificate",
        ),
    ],
)
def test_bad_https_options_are_one_line(
    tmp_path: Path, pair: tls.TlsFiles, options: list[str], expected: str
) -> None:
    other = tls.tls_files(Settings(database_url=sqlite_url(tmp_path / "o" / "o.db"), https_port=0))
    assert other is not None
    port = free_port()
    values = {
        "cert": str(pair.certfile),
        "key": str(pair.keyfile),
        "other_key": str(other.keyfile),
        "missing": str(tmp_path / "missing.pem"),
        "port": str(port),
        "https": str(free_port()),
    }
    args = [option.format(**values) for option in options]
    db = tmp_path / "m.db"
    line = serve_refusal(tmp_path, "--port", str(port), "--database-url", sqlite_url(db), *args)
    assert expected.format(**values) in line
    for keyfile in (pair.keyfile, other.keyfile):
        assert keyfile.read_text().splitlines()[1] not in line


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = serve_refusal(
            tmp_path, "--port", str(port), "--database-url", sqlite_url(tmp_path / "m.db")
        )
    assert f"cannot listen on 127.0.0.1 port {port}: Address already in use" in line


def test_unwritable_certificate_directory_is_refused(tmp_path: Path) -> None:
    # A regular file where the database's directory should be: no user, root included, can
    # create the certificate there.
    (tmp_path / "plain-file").write_text("")
    url = sqlite_url(tmp_path / "plain-file" / "x.db")
    with pytest.raises(tls.TlsError, match="cannot keep a self-signed certificate at"):
        tls.tls_files(Settings(database_url=url, https_port=0))


# --- the certificate module ---------------------------------------------------------------------


def test_self_signed_certificate_names_and_strict_verification(pair: tls.TlsFiles) -> None:
    certificate = x509.load_pem_x509_certificate(pair.certfile.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert socket.gethostname() in names.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert pair.fingerprint == sha256_fingerprint(
        certificate.public_bytes(serialization.Encoding.DER)
    )
    # OpenSSL's strict mode (what Python 3.13 turns on by default) accepts it as its own CA.
    result = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", str(pair.certfile), str(pair.certfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 and "not found" in result.stderr:
        pytest.skip("no openssl command")
    assert result.returncode == 0, result.stderr


def test_default_paths_follow_the_database(tmp_path: Path) -> None:
    on_sqlite = Settings(database_url=sqlite_url(tmp_path / "d" / "x.db"))
    assert tls.default_paths(on_sqlite) == (
        tmp_path / "d" / "x.db.tls.crt",
        tmp_path / "d" / "x.db.tls.key",
    )
    on_postgres = Settings(database_url="postgresql+psycopg://u@127.0.0.1/x")
    assert tls.default_paths(on_postgres) == (
        Path("analytics-mock.tls.crt"),
        Path("analytics-mock.tls.key"),
    )


def test_expired_self_signed_certificate_is_replaced(pair: tls.TlsFiles, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(pair.keyfile.read_bytes(), password=None)
    old = x509.load_pem_x509_certificate(pair.certfile.read_bytes())
    now = datetime.now(UTC)
    expired = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.issuer)
        .public_key(old.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=10))
        .not_valid_after(now - timedelta(days=1))
        .sign(key, old.signature_hash_algorithm)  # type: ignore[arg-type]
    )
    pair.certfile.write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    renewed = tls.tls_files(
        Settings(database_url=sqlite_url(tmp_path / "pair" / "p.db"), https_port=0)
    )
    assert renewed is not None
    assert renewed.certfile == pair.certfile
    certificate = x509.load_pem_x509_certificate(renewed.certfile.read_bytes())
    assert certificate.not_valid_after_utc > now
    assert renewed.fingerprint != pair.fingerprint


def test_processes_starting_at_once_share_one_certificate(tmp_path: Path) -> None:
    script = (
        "import sys; from analytics_mock.settings import Settings; "
        "from analytics_mock.tls import tls_files; "
        "print(tls_files(Settings(database_url=sys.argv[1], https_port=0)).fingerprint)"
    )
    url = sqlite_url(tmp_path / "shared" / "x.db")
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, url], stdout=subprocess.PIPE, text=True, env=clean_env()
        )
        for _ in range(4)
    ]
    fingerprints = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert all(process.returncode == 0 for process in processes)
    assert len(fingerprints) == 1
    assert fingerprints == {tls.fingerprint(_der(tmp_path / "shared" / "x.db.tls.crt"))}


def _der(certfile: Path) -> bytes:
    return x509.load_pem_x509_certificate(certfile.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )


# --- configuration handed to worker processes ---------------------------------------------------


def test_exported_settings_read_back_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "environ", clean_env())
    values: dict[str, Any] = {
        "host": "::1",
        "port": 1234,
        "database_url": "postgresql+psycopg://u:p%40ss@127.0.0.1:5432/x?options=-csearch_path%3Ds",
        "log_format": "json",
        "lock_system_account": True,
        "session_timeout": 12.5,
        "maintenance": False,
        "secret_key": "s3cret with spaces",
        "secret_key_file": tmp_path / "k",
        "https_port": 22016,
        "certfile": tmp_path / "c.pem",
        "keyfile": tmp_path / "k.pem",
        "workers": 3,
    }
    settings = Settings(**values)
    # A setting that is None leaves no variable behind for the workers to read.
    os.environ["ANALYTICS_MOCK_USERS_FILE"] = "stale.yaml"
    export_settings(settings)
    assert "ANALYTICS_MOCK_USERS_FILE" not in os.environ
    again = Settings()
    for name in Settings.model_fields:
        mine, theirs = getattr(settings, name), getattr(again, name)
        if hasattr(mine, "get_secret_value"):
            mine, theirs = mine.get_secret_value(), theirs.get_secret_value()
        assert theirs == mine, name


def test_the_collector_is_set_for_serving() -> None:
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    try:
        settle_collector()
        assert gc.isenabled() and gc.get_threshold()[0] == COLLECT_EVERY
        # What existed when serving began is left out of every collection.
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        if not enabled:
            gc.disable()
