"""Fixtures for the mail delivery tests: the anyio backend and test TLS material."""

from pathlib import Path

import pytest

from tests.support.smtp_servers import TlsFiles, make_tls_files


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and a 127.0.0.1/localhost server certificate; pass `ca_file` to trust them."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def other_ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The certificate of an unrelated CA, which did not sign the server certificate."""
    return make_tls_files(tmp_path_factory.mktemp("other-tls"), ca_name="unrelated CA").ca_file
