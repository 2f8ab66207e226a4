"""The two published documents: valid, linted, complete, and true to the server's 405s and docs.

`/openapi.json` (the emulated Analyzer API) and `/_mock/openapi.json` (the test controls) are
each checked with openapi-spec-validator and with Redocly's recommended ruleset, with and
without a control token; schemathesis holds them to the server's answers
(tests/reliability/test_fuzz_openapi.py) and generated clients use them
(tests/api/test_generated_clients.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from analytics_mock.testing import AnalyticsMock, isolated_settings
from tests.support.openapi_tools import run_tool

DOCUMENTS = ("/openapi.json", "/_mock/openapi.json")
OPERATION_IDS = {
    ("get", "/Analytics/v1/objects/EmailServerSettings"): "listEmailServerSettings",
    ("put", "/Analytics/v1/objects/EmailServerSettings/{id}"): "updateEmailServerSetting",
    (
        "get",
        "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail",
    ): "prepareSendTestMail",
    (
        "post",
        "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail/invoke",
    ): "invokeSendTestMail",
}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def documents(tmp_path: Path, **settings: Any) -> dict[str, dict[str, Any]]:
    config = isolated_settings(
        database_url=f"sqlite:///{tmp_path / 'doc.db'}", secret_key="doc-secret-key", **settings
    )
    with AnalyticsMock(config) as mock:
        answers = {url: mock.client.get(url) for url in DOCUMENTS}
    assert all(answer.status_code == 200 for answer in answers.values())
    return {url: answer.json() for url, answer in answers.items()}


@pytest.fixture(scope="module", params=[None, "doc-control-token"], ids=["open", "token"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    token = request.param
    return documents(tmp_path_factory.mktemp("doc"), control_token=token)


@pytest.mark.parametrize("url", DOCUMENTS)
def test_openapi_spec_validator_finds_no_error(served: dict[str, Any], url: str) -> None:
    document = served[url]
    assert document["openapi"].startswith("3.1.")
    errors = [error.message for error in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []


@pytest.mark.parametrize("url", DOCUMENTS)
def test_redocly_recommended_ruleset_finds_no_error(
    served: dict[str, Any], url: str, tmp_path: Path
) -> None:
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(served[url]))
    result = run_tool("redocly", "lint", "--extends", "recommended", "--format", "json", str(path))
    report = json.loads(result.stdout)
    errors = [p for p in report["problems"] if p["severity"] == "error"]
    assert errors == [], errors
    assert report["totals"]["errors"] == 0


def test_the_emulated_document_has_the_four_operations_only(served: dict[str, Any]) -> None:
    document = served["/openapi.json"]
    found = {
        (method, path): operation["operationId"]
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert found == OPERATION_IDS
    schemes = document["components"]["securitySchemes"]
    assert schemes["basicAuth"] == {**schemes["basicAuth"], "type": "http", "scheme": "basic"}
    assert schemes["hssoToken"] == {**schemes["hssoToken"], "type": "http", "scheme": "HSSO"}
    for path, operations in document["paths"].items():
        for operation in operations.values():
            assert operation["security"] == [{"basicAuth": []}, {"hssoToken": []}], path
            responses = operation["responses"]
            assert {"200", "401", "403", "406", "412", "500", "default"} <= set(responses)
            assert responses["200"]["headers"]["WWW-Authenticate"]["required"] is True
            challenge = responses["401"]["headers"]["WWW-Authenticate"]["schema"]["const"]
            assert challenge == 'Basic realm="Analytics"'


def test_update_body_is_partial_and_takes_null_and_coerced_forms(served: dict[str, Any]) -> None:
    schemas = served["/openapi.json"]["components"]["schemas"]
    update = schemas["EmailSettingUpdate"]
    assert "required" not in update
    assert update["additionalProperties"] is False
    for name, member in update["properties"].items():
        if name != "password":
            assert {"type": "null"} in member["anyOf"], name
    port = update["properties"]["portNumber"]["anyOf"]
    assert {branch["type"] for branch in port} == {"integer", "string", "null"}
    flags = update["properties"]["authenticationEnabled"]["anyOf"]
    assert {"type": "string", "enum": ["true", "false"]} in flags
    assert update["then"]["required"] == ["password"]


def test_control_token_is_a_security_scheme_of_the_controls_only(tmp_path: Path) -> None:
    served = documents(tmp_path, control_token="doc-control-token")
    controls = served["/_mock/openapi.json"]
    assert controls["components"]["securitySchemes"]["controlToken"]["scheme"] == "bearer"
    for path, operations in controls["paths"].items():
        for operation in operations.values():
            guarded = path.startswith("/_mock/")
            assert operation["security"] == ([{"controlToken": []}] if guarded else []), path
    assert "controlToken" not in json.dumps(served["/openapi.json"])


def test_every_405_allows_exactly_the_documented_methods(tmp_path: Path) -> None:
    config = isolated_settings(
        database_url=f"sqlite:///{tmp_path / 'allow.db'}", secret_key="doc-secret-key"
    )
    with AnalyticsMock(config) as mock:
        wrong: dict[str, tuple[str, str | None]] = {}
        for url in DOCUMENTS:
            for path, operations in mock.client.get(url).json()["paths"].items():
                methods = {m.upper() for m in operations if m in HTTP_METHODS}
                concrete = (
                    path.replace("{id}", "mailServerSetting%230")
                    .replace("{fault_id}", "1")
                    .replace("{name}", "system")
                )
                for method in sorted({"GET", "PUT", "POST", "DELETE", "PATCH"} - methods):
                    answer = mock.client.request(method, concrete)
                    allow = answer.headers.get("allow")
                    allowed = {m.strip() for m in (allow or "").split(",") if m.strip()}
                    if answer.status_code != 405 or allowed != methods:
                        wrong[f"{method} {path}"] = (str(answer.status_code), allow)
    assert wrong == {}


def test_docs_page_loads_its_scripts_from_this_server(tmp_path: Path) -> None:
    config = isolated_settings(
        database_url=f"sqlite:///{tmp_path / 'docs.db'}", secret_key="doc-secret-key"
    )
    with AnalyticsMock(config) as mock:
        page = mock.client.get("/docs")
        assert page.status_code == 200
        assert "//" not in page.text.replace("<!doctype html>", "")
        sources = [part.split('"', 1)[0] for part in page.text.split('src="')[1:]] + [
            part.split('"', 1)[0] for part in page.text.split('href="')[1:]
        ]
        assert sources
        for source in sources:
            asset = mock.client.get(source)
            assert asset.status_code == 200, source
            assert len(asset.content) > 1000, source
        assert "/openapi.json" in page.text and "/_mock/openapi.json" in page.text


def test_the_documents_name_this_server(tmp_path: Path) -> None:
    config = isolated_settings(
        database_url=f"sqlite:///{tmp_path / 'srv.db'}", secret_key="doc-secret-key"
    )
    with AnalyticsMock(config) as mock:
        document = mock.client.get("/openapi.json").json()
    assert document["servers"] == [
        {"url": str(httpx.URL(mock.url)).rstrip("/"), **{"description": "This emulator"}}
    ]
