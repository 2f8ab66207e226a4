"""Logging: uvicorn's access lines carry no secret of a query string."""

from __future__ import annotations

import logging

import pytest

from analytics_mock.logs import configure_logging
from analytics_mock.services.journal import redact_text


def test_an_access_line_masks_the_secrets_of_its_query(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("info", "text", redact_query=redact_text)
        # As uvicorn's access logger writes a request line.
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5000",
            "PUT",
            "/Analytics/v1/objects/x?password=SEKRET10q&access_token=tok-42&hsso=h-7&page=2"
            "&pass+word=SEKRET11q&password%3DSEKRET12q",
            "1.1",
            200,
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("uvicorn.access").filters[:] = []
    line = capsys.readouterr().err
    assert "SEKRET1" not in line and "tok-42" not in line and "h-7" not in line
    assert (
        "/Analytics/v1/objects/x?password=***&access_token=***&hsso=***&page=2"
        "&pass+word=***&password%3D***"
    ) in line
