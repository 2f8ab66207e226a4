"""Routes of the test controls under `/_mock/`, and the health probes."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from analytics_mock.api.dependencies import RuntimeDep, is_json_content_type, parse_json
from analytics_mock.api.openapi import json_request_body
from analytics_mock.api.responses import error_responses
from analytics_mock.config_files import first_problem
from analytics_mock.db.migrate import is_at_head
from analytics_mock.db.repositories import JournalRepository, TestMailRepository
from analytics_mock.errors import (
    AuthenticationFailed,
    InvalidBody,
    ObjectNotFound,
    UnsupportedMediaType,
)
from analytics_mock.schemas.controls import (
    MAX_INT,
    Fault,
    FaultIn,
    Health,
    JournalEntry,
    Maintenance,
    ResetDone,
    State,
    TestMailRecord,
    UnlockedUser,
)
from analytics_mock.services import controls as service
from analytics_mock.services.journal import journal_body
from analytics_mock.services.users import unlock_user

CONTROL_TAG = "Test controls (emulator only)"


async def require_control_token(request: Request, runtime: RuntimeDep) -> None:
    """401 unless the configured control token is sent as a Bearer token."""
    expected = runtime.settings.control_token
    if expected is None:
        return
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.get_secret_value().encode()
    ):
        raise AuthenticationFailed()


router = APIRouter(
    prefix="/_mock",
    tags=[CONTROL_TAG],
    dependencies=[Depends(require_control_token)],
    responses=error_responses(400, 401, 404, 415),
)
health = APIRouter(tags=[CONTROL_TAG])


def _parse(model: Any, document: object) -> Any:
    """`document` as `model`, or a 400 that names the first problem."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise InvalidBody(f"The request body is invalid: {first_problem(exc)}.") from None


async def _json_content_type(request: Request) -> None:
    if not is_json_content_type(request.headers.get("content-type")):
        raise UnsupportedMediaType("The Content-Type of the request must be application/json.")


async def control_body(
    request: Request, _json: Annotated[None, Depends(_json_content_type)]
) -> object:
    """The JSON body of a control call (same parsing rules as the emulated API)."""
    return parse_json(await request.body())


ControlBody = Annotated[object, Depends(control_body)]


@router.post(
    "/reset",
    summary="Return to the seed state",
    operation_id="resetEmulator",
    responses={200: {"model": ResetDone}},
)
def reset(runtime: RuntimeDep) -> dict[str, bool]:
    """Settings, users' lock state, tokens, journal, faults, maintenance and test mails."""
    with runtime.db.session(write=True) as session:
        service.reset(
            session, runtime.box, runtime.seed, runtime.users, runtime.settings.maintenance
        )
    return {"reset": True}


@router.get(
    "/state",
    summary="Export the emulated state",
    operation_id="getState",
    responses={200: {"model": State}},
)
def get_state(runtime: RuntimeDep) -> dict[str, Any]:
    """Settings, users, maintenance and faults; passwords only encrypted or hashed."""
    with runtime.db.session() as session:
        return service.export_state(session)


@router.put(
    "/state",
    summary="Import the emulated state",
    operation_id="putState",
    responses={200: {"model": State}},
    openapi_extra=json_request_body(State),
)
def put_state(document: ControlBody, runtime: RuntimeDep) -> dict[str, Any]:
    """Replace settings, users, maintenance and faults; every session ends."""
    state: State = _parse(State, document)
    try:
        with runtime.db.session(write=True) as session:
            service.import_state(session, runtime.box, state, runtime.clock())
    except ValueError as exc:
        raise InvalidBody(f"The request body is invalid: {exc}.") from None
    with runtime.db.session() as session:
        return service.export_state(session)


@router.get(
    "/requests",
    summary="Read the request journal",
    operation_id="listRequests",
    response_model=dict[str, list[JournalEntry]],
)
def get_requests(
    runtime: RuntimeDep,
    method: str | None = None,
    path: str | None = None,
    status: Annotated[int | None, Query(ge=0, le=599)] = None,
    since: Annotated[float | None, Query(description="Epoch seconds.")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> JSONResponse:
    """Journalled calls matching every filter given, newest first."""
    # Journalled text holds no NUL (it is stored escaped), and PostgreSQL refuses one in a query.
    if any("\x00" in text for text in (method or "", path or "")):
        return JSONResponse({"requests": []})
    with runtime.db.session() as session:
        rows = JournalRepository(session).newest(
            limit=limit,
            method=method.upper() if method else None,
            path=path,
            status=status,
            since=since,
        )
        return JSONResponse({"requests": [journal_body(row) for row in rows]})


@router.delete(
    "/requests", status_code=204, summary="Empty the request journal", operation_id="clearRequests"
)
def delete_requests(runtime: RuntimeDep) -> Response:
    """Forget every journalled call."""
    with runtime.db.session(write=True) as session:
        JournalRepository(session).clear()
    return Response(status_code=204)


@router.get(
    "/faults",
    summary="List fault rules",
    operation_id="listFaults",
    response_model=dict[str, list[Fault]],
)
def get_faults(runtime: RuntimeDep) -> dict[str, Any]:
    """Every fault rule in the order it is matched."""
    with runtime.db.session() as session:
        return {"faults": service.list_faults(session)}


@router.post(
    "/faults",
    status_code=201,
    summary="Add a fault rule",
    operation_id="addFault",
    response_model=Fault,
    openapi_extra=json_request_body(FaultIn),
)
def post_fault(document: ControlBody, runtime: RuntimeDep) -> dict[str, Any]:
    """Matching emulated calls get a status, a delay, or a dropped connection."""
    fault: FaultIn = _parse(FaultIn, document)
    with runtime.db.session(write=True) as session:
        return service.add_fault(session, fault, runtime.clock())


@router.delete(
    "/faults", status_code=204, summary="Remove every fault rule", operation_id="clearFaults"
)
def delete_faults(runtime: RuntimeDep) -> Response:
    """No fault rule remains."""
    with runtime.db.session(write=True) as session:
        service.clear_faults(session)
    return Response(status_code=204)


@router.delete(
    "/faults/{fault_id}",
    status_code=204,
    summary="Remove one fault rule",
    operation_id="deleteFault",
)
def delete_fault(fault_id: Annotated[int, Path(ge=0, le=MAX_INT)], runtime: RuntimeDep) -> Response:
    """404 when there is no such rule."""
    with runtime.db.session(write=True) as session:
        if not service.delete_fault(session, fault_id):
            raise ObjectNotFound(f'The fault "{fault_id}" was not found.')
    return Response(status_code=204)


@router.get(
    "/maintenance",
    summary="Read the maintenance switch",
    operation_id="getMaintenance",
    response_model=Maintenance,
)
def get_maintenance(runtime: RuntimeDep) -> dict[str, bool]:
    """Whether every emulated call answers 412."""
    with runtime.db.session() as session:
        return {"enabled": service.maintenance_enabled(session)}


@router.put(
    "/maintenance",
    summary="Turn maintenance on or off",
    operation_id="putMaintenance",
    response_model=Maintenance,
    openapi_extra=json_request_body(Maintenance),
)
def put_maintenance(document: ControlBody, runtime: RuntimeDep) -> dict[str, bool]:
    """While on, every emulated call answers 412 in every process."""
    switch: Maintenance = _parse(Maintenance, document)
    with runtime.db.session(write=True) as session:
        service.set_maintenance(session, switch.enabled)
    return {"enabled": switch.enabled}


@router.get(
    "/test-mails",
    summary="Read the test-mail record",
    operation_id="listTestMails",
    response_model=dict[str, list[TestMailRecord]],
)
def get_test_mails(
    runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> JSONResponse:
    """Every test-mail attempt, newest first, without passwords."""
    with runtime.db.session() as session:
        return JSONResponse({"testMails": service.list_test_mails(session, limit)})


@router.delete(
    "/test-mails",
    status_code=204,
    summary="Empty the test-mail record",
    operation_id="clearTestMails",
)
def delete_test_mails(runtime: RuntimeDep) -> Response:
    """Forget every test-mail attempt."""
    with runtime.db.session(write=True) as session:
        TestMailRepository(session).clear()
    return Response(status_code=204)


# `:path`, because an account name may hold a "/" (sent as %2F).
@router.post(
    "/users/{name:path}/unlock",
    summary="Unlock an account",
    operation_id="unlockUser",
    responses={200: {"model": UnlockedUser}},
)
def unlock(name: str, runtime: RuntimeDep) -> dict[str, Any]:
    """Clear the account's failures and lock; 404 when there is no such account."""
    with runtime.db.session(write=True) as session:
        if "\x00" in name or not unlock_user(session, name):
            raise ObjectNotFound(f'The user "{name}" was not found.')
    return {"name": name, "locked": False}


@health.get("/healthz", summary="Alive", operation_id="healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@health.get(
    "/readyz",
    summary="Ready: database reachable and migrated",
    operation_id="readyz",
    responses={
        200: {"model": Health},
        503: {"model": Health, "description": "The database does not answer, or is not migrated."},
    },
)
def readyz(runtime: RuntimeDep) -> JSONResponse:
    """200 when the database answers at the newest schema revision, else 503."""
    try:
        with runtime.db.session() as session:
            ready = is_at_head(session.connection())
    except SQLAlchemyError:
        ready = False
    if not ready:
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ready"})
