"""The two OpenAPI documents, and the offline `/docs` page that shows them.

`/openapi.json` describes the emulated Analyzer API only; `/_mock/openapi.json` describes the
emulator's own controls and health probes. FastAPI writes each from its routes; this module
adds what the routes cannot say: the request bodies that endpoints parse themselves, the
security schemes, the `WWW-Authenticate` headers, and the `default` answer of a fault rule.
"""

from __future__ import annotations

import html
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from analytics_mock import __version__

_REF = "#/components/schemas/{model}"
EMULATED_PREFIX = "/Analytics/"
EMULATED_DOCUMENT = "/openapi.json"
CONTROLS_DOCUMENT = "/_mock/openapi.json"
DOCS_PAGE = "/docs"
_ASSETS = "/docs/assets"

BASIC = "basicAuth"
HSSO = "hssoToken"
CONTROL = "controlToken"
_LICENSE = {"name": "Apache-2.0", "identifier": "Apache-2.0"}

# Handed back on every authenticated answer, the errors after authentication included.
HSSO_HEADER: dict[str, Any] = {
    "description": "The session token to send as `Authorization: HSSO <token>` next time.",
    "schema": {"type": "string", "pattern": "^HSSO [!-~]+$"},
}
_SECURITY_SCHEMES: dict[str, Any] = {
    BASIC: {
        "type": "http",
        "scheme": "basic",
        "description": "A configured user's name and password; the built-in one is system:manager.",
    },
    HSSO: {
        "type": "http",
        "scheme": "HSSO",
        "description": (
            "`Authorization: HSSO <token>`, with the token of an earlier answer's "
            "`WWW-Authenticate: HSSO <token>` header. It expires after 1,000 s without use."
        ),
    },
}
_EMULATED_DESCRIPTION = (
    "The Hitachi Ops Center Analyzer REST API for email server settings, as the emulator "
    "analytics-mock serves it. Every call needs a user with the Admin permission. Every error "
    "answers in the vendor's envelope. The emulator's own choices, where the vendor says "
    "nothing, are marked [pick] in the descriptions."
)
_CONTROLS_DESCRIPTION = (
    "The emulator's test controls under /_mock/ (reset, state, request journal, fault rules, "
    "maintenance, test-mail record, account unlock) and its health probes. They are not part "
    "of the Analyzer API."
)


def _default_response(document: dict[str, Any]) -> dict[str, Any]:
    # FastAPI names a component after the model's class or its title, by version.
    schemas = document["components"]["schemas"]
    name = next(name for name in ("ErrorBody", "Error") if name in schemas)
    return {
        "description": (
            "Any other status in the vendor's envelope, such as one a fault rule of "
            "POST /_mock/faults injects."
        ),
        "headers": {"WWW-Authenticate": {**HSSO_HEADER, "required": False}},
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=name)}}},
    }


# Statuses answered after the caller was authenticated, so with the HSSO token.
_AFTER_AUTHENTICATION = ("200", "400", "403", "404", "415", "500")


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that parses `model` from a raw JSON body."""
    title = model.model_config.get("title") or model.__name__
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=title)}}},
        }
    }


def _document(
    app: FastAPI,
    request_models: list[type[BaseModel]],
    *,
    emulated: bool,
    title: str,
    description: str,
) -> dict[str, Any]:
    document = get_openapi(
        title=title,
        version=__version__,
        openapi_version="3.1.0",
        description=description,
        routes=app.routes,
        license_info=_LICENSE,
    )
    document["paths"] = {
        path: operations
        for path, operations in document.get("paths", {}).items()
        if path.startswith(EMULATED_PREFIX) == emulated
    }
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in request_models:
        if _uses(document, model):
            schema = model.model_json_schema(ref_template=_REF)
            definitions = {**schema.pop("$defs", {}), schema.get("title", model.__name__): schema}
            for definition in definitions.values():
                _no_null_defaults(definition)
            schemas.update(definitions)
    # Every validation error here is the vendor's 400, never FastAPI's 422.
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    _keep_referenced(document)
    return document


def _keep_referenced(document: dict[str, Any]) -> None:
    """Drop the component schemas that only the other document's operations use."""
    schemas: dict[str, Any] = document["components"]["schemas"]
    prefix = _REF.format(model="")
    wanted: set[str] = set()
    pending: list[Any] = [document["paths"]]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(prefix):
                name = ref[len(prefix) :]
                if name not in wanted and name in schemas:
                    wanted.add(name)
                    pending.append(schemas[name])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    document["components"]["schemas"] = {k: v for k, v in schemas.items() if k in wanted}


def _no_null_defaults(schema: dict[str, Any]) -> None:
    # A request member left out is not the same as null to a generator: openapi-typescript
    # makes a member with a default required, so a partial update would not compile.
    for member in schema.get("properties", {}).values():
        if member.get("default", 0) is None:
            del member["default"]


def _uses(document: dict[str, Any], model: type[BaseModel]) -> bool:
    title = model.model_config.get("title") or model.__name__
    return _REF.format(model=title) in json.dumps(document.get("paths", {}))


def emulated_document(app: FastAPI, request_models: list[type[BaseModel]]) -> dict[str, Any]:
    """The document of the emulated Analyzer API: its four operations, nothing else."""
    document = _document(
        app,
        request_models,
        emulated=True,
        title="Analyzer API (analytics-mock)",
        description=_EMULATED_DESCRIPTION,
    )
    document["components"]["securitySchemes"] = _SECURITY_SCHEMES
    for operations in document["paths"].values():
        for operation in operations.values():
            operation["security"] = [{BASIC: []}, {HSSO: []}]
            responses = operation["responses"]
            for status, response in responses.items():
                if status in _AFTER_AUTHENTICATION:
                    header = {**HSSO_HEADER, "required": status == "200"}
                    response.setdefault("headers", {})["WWW-Authenticate"] = header
            if "401" in responses:
                responses["401"]["headers"] = {
                    "WWW-Authenticate": {
                        "description": "The challenge of a refused call.",
                        "required": True,
                        "schema": {"type": "string", "const": 'Basic realm="Analytics"'},
                    }
                }
            responses["default"] = _default_response(document)
    return document


def controls_document(
    app: FastAPI, request_models: list[type[BaseModel]], *, token: bool
) -> dict[str, Any]:
    """The document of the test controls and health probes."""
    document = _document(
        app,
        request_models,
        emulated=False,
        title="analytics-mock test controls",
        description=_CONTROLS_DESCRIPTION,
    )
    if token:
        document["components"]["securitySchemes"] = {
            CONTROL: {
                "type": "http",
                "scheme": "bearer",
                "description": "The token given with --control-token.",
            }
        }
    for path, operations in document["paths"].items():
        for operation in operations.values():
            guarded = token and path.startswith("/_mock/")
            operation["security"] = [{CONTROL: []}] if guarded else []
            if not guarded:
                operation["responses"].pop("401", None)
    return document


def _with_server(document: dict[str, Any], request: Request) -> dict[str, Any]:
    # The server as this request reached it, so a generated client finds it without setup.
    base = str(request.base_url).rstrip("/")
    return {**document, "servers": [{"url": base, "description": "This emulator"}]}


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-ui-standalone-preset.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  urls: {urls},
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout"
}});
</script>
</body>
</html>
"""


def install_documents(
    app: FastAPI, request_models: list[type[BaseModel]], *, controls: bool, control_token: bool
) -> None:
    """Serve both documents, and `/docs` from the swagger-ui files of an installed package."""
    cache: dict[str, dict[str, Any]] = {}

    def emulated() -> dict[str, Any]:
        if "emulated" not in cache:
            cache["emulated"] = emulated_document(app, request_models)
        return cache["emulated"]

    def controlled() -> dict[str, Any]:
        if "controls" not in cache:
            cache["controls"] = controls_document(app, request_models, token=control_token)
        return cache["controls"]

    # `app.openapi()` is the emulated API's, as `/openapi.json` serves it.
    app.openapi = emulated  # type: ignore[method-assign]

    async def emulated_json(request: Request) -> JSONResponse:
        return JSONResponse(_with_server(emulated(), request))

    async def controls_json(request: Request) -> JSONResponse:
        return JSONResponse(_with_server(controlled(), request))

    app.add_api_route(EMULATED_DOCUMENT, emulated_json, include_in_schema=False)
    urls = [{"url": EMULATED_DOCUMENT, "name": "Analyzer API"}]
    if controls:
        app.add_api_route(CONTROLS_DOCUMENT, controls_json, include_in_schema=False)
        urls.append({"url": CONTROLS_DOCUMENT, "name": "Test controls"})
    assets = _swagger_ui_assets()
    if assets is None:
        return
    app.router.routes.append(Mount(_ASSETS, app=StaticFiles(directory=assets), name="docs"))
    page = _PAGE.format(
        title=html.escape(app.title), assets=_ASSETS, urls=json.dumps(urls).replace("<", "\\u003c")
    )

    async def docs() -> HTMLResponse:
        return HTMLResponse(page)

    app.add_api_route(DOCS_PAGE, docs, include_in_schema=False)


def _swagger_ui_assets() -> str | None:
    """The folder of swagger-ui's files (package swagger-ui-bundle-v2), if it is installed."""
    try:
        from swagger_ui_bundle import (  # type: ignore[import-untyped]  # noqa: PLC0415
            swagger_ui_path,
        )
    except ImportError:
        return None
    return str(swagger_ui_path)
