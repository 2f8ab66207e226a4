"""Routes of the test controls under `/_mock/`, and the health probes."""

from __future__ import annotations

import hmac
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from analytics_mock.api.dependencies import RuntimeDep, read_json
from analytics_mock.api.middleware import header_of
from analytics_mock.api.openapi import json_request_body
from analytics_mock.api.responses import error_responses
from analytics_mock.config_files import first_problem
from analytics_mock.db.engine import orm
from analytics_mock.db.migrate import is_at_head
from analytics_mock.db.repositories import (
    ControlRepository,
    JournalRepository,
    TestMailRepository,
)
from analytics_mock.errors import (
    AuthenticationFailed,
    InvalidBody,
    ObjectNotFound,
)
from analytics_mock.formats import MAX_INT
from analytics_mock.schemas.controls import (
    Fault,
    FaultIn,
    Health,
    JournalEntry,
    MailFailure,
    MailFailureIn,
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
    scheme, _, token = (header_of(request.scope, b"authorization") or "").partition(" ")
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


def _decoded(path: str) -> str:
    """`path` percent-decoded, or a 400 when its escapes are not UTF-8."""
    try:
        return service.decoded_path(path)
    except ValueError:
        raise InvalidBody(
            "The request body is invalid: the path's percent escapes are not UTF-8."
        ) from None


def _parse(model: Any, document: object) -> Any:
    """`document` as `model`, or a 400 that names the first problem."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise InvalidBody(f"The request body is invalid: {first_problem(exc)}.") from None


async def control_body(request: Request) -> object:
    """The JSON body of a control call (same rules as the emulated API: 415, then 400)."""
    return await read_json(request)


ControlBody = Annotated[object, Depends(control_body)]


@router.post(
    "/reset",
    summary="Return to the seed state",
    operation_id="resetEmulator",
    responses={200: {"model": ResetDone}},
)
def reset(runtime: RuntimeDep) -> dict[str, bool]:
    """Settings, users' lock state, tokens, journal, faults, maintenance and test mails.

    Calls still in flight in this process are fenced out first: held by a delay, they end
    unanswered; none of them is journalled after the reset.
    """
    runtime.reset()
    return {"reset": True}


@router.get(
    "/state",
    summary="Export the emulated state",
    operation_id="getState",
    responses={200: {"model": State}},
)
async def get_state(runtime: RuntimeDep) -> dict[str, Any]:
    """Settings, users, maintenance and faults; passwords only encrypted or hashed."""
    return await runtime.db.read(orm(service.export_state))


@router.put(
    "/state",
    summary="Import the emulated state",
    operation_id="putState",
    openapi_extra=json_request_body(State),
    # Fault rules may carry bodies of their own, so a state document can outgrow the limit.
    responses={200: {"model": State}, **error_responses(413)},
)
async def put_state(document: ControlBody, runtime: RuntimeDep) -> dict[str, Any]:
    """Replace settings, users, maintenance and faults; every session ends."""
    state: State = _parse(State, document)
    settings = runtime.settings
    if len(state.faults) > settings.max_fault_rules:
        raise InvalidBody(
            f"The request body is invalid: at most {settings.max_fault_rules} fault rules."
        )
    if len(state.users) > settings.max_state_users:
        raise InvalidBody(f"The request body is invalid: at most {settings.max_state_users} users.")
    try:
        state = await run_in_threadpool(service.hash_plaintext_passwords, state)
        imported = partial(service.import_state, box=runtime.box, state=state, now=runtime.clock())
        await runtime.db.write(orm(imported))
    except ValueError as exc:
        raise InvalidBody(f"The request body is invalid: {exc}.") from None
    return await runtime.db.read(orm(service.export_state))


@router.get(
    "/requests",
    summary="Read the request journal",
    operation_id="listRequests",
    response_model=dict[str, list[JournalEntry]],
)
async def get_requests(
    runtime: RuntimeDep,
    method: str | None = None,
    path: str | None = None,
    status: Annotated[int | None, Query(ge=0, le=599)] = None,
    since: Annotated[float | None, Query(description="Epoch seconds.", allow_inf_nan=False)] = None,
    limit: Annotated[
        int, Query(ge=1, le=1_000_000, description="At most the journal's size is kept.")
    ] = 100,
) -> JSONResponse:
    """Journalled calls matching every filter given, newest first.

    `path` is the decoded path; a percent-encoded one (%23 for #) is decoded first.
    """
    if path is not None:
        path = _decoded(path)
    # Journalled text holds no NUL (it is stored escaped), and PostgreSQL refuses one in a query.
    if any("\x00" in text for text in (method or "", path or "")):
        return JSONResponse({"requests": []})

    def entries(session: Session) -> list[dict[str, Any]]:
        rows = JournalRepository(session).newest(
            limit=limit,
            method=method.upper() if method else None,
            path=path,
            status=status,
            since=since,
        )
        return [journal_body(row) for row in rows]

    return JSONResponse({"requests": await runtime.db.read(orm(entries))})


@router.delete(
    "/requests", status_code=204, summary="Empty the request journal", operation_id="clearRequests"
)
async def delete_requests(runtime: RuntimeDep) -> Response:
    """Forget every journalled call."""
    await runtime.db.write(lambda connection: JournalRepository(connection).clear())
    return Response(status_code=204)


@router.get(
    "/faults",
    summary="List fault rules",
    operation_id="listFaults",
    response_model=dict[str, list[Fault]],
)
async def get_faults(runtime: RuntimeDep) -> dict[str, Any]:
    """Every fault rule in the order it is matched."""
    return {"faults": await runtime.db.read(orm(service.list_faults))}


@router.post(
    "/faults",
    status_code=201,
    summary="Add a fault rule",
    operation_id="addFault",
    response_model=Fault,
    openapi_extra=json_request_body(FaultIn),
)
async def post_fault(document: ControlBody, runtime: RuntimeDep) -> dict[str, Any]:
    """Matching emulated calls get a status, a delay, or a dropped connection."""
    fault: FaultIn = _parse(FaultIn, document)
    _decoded(fault.path)
    added = partial(
        service.add_fault, fault=fault, now=runtime.clock(), limit=runtime.settings.max_fault_rules
    )
    return await runtime.db.write(orm(added))


@router.delete(
    "/faults", status_code=204, summary="Remove every fault rule", operation_id="clearFaults"
)
async def delete_faults(runtime: RuntimeDep) -> Response:
    """No fault rule remains."""
    await runtime.db.write(orm(service.clear_faults))
    return Response(status_code=204)


@router.delete(
    "/faults/{fault_id}",
    status_code=204,
    summary="Remove one fault rule",
    operation_id="deleteFault",
)
async def delete_fault(
    fault_id: Annotated[int, Path(ge=0, le=MAX_INT)], runtime: RuntimeDep
) -> Response:
    """404 when there is no such rule."""
    if not await runtime.db.write(orm(partial(service.delete_fault, fault_id=fault_id))):
        raise ObjectNotFound(f'The fault "{fault_id}" was not found.')
    return Response(status_code=204)


@router.get(
    "/maintenance",
    summary="Read the maintenance switch",
    operation_id="getMaintenance",
    response_model=Maintenance,
)
async def get_maintenance(runtime: RuntimeDep) -> dict[str, bool]:
    """Whether every emulated call answers 412."""
    return {"enabled": await runtime.db.read(orm(service.maintenance_enabled))}


@router.put(
    "/maintenance",
    summary="Turn maintenance on or off",
    operation_id="putMaintenance",
    response_model=Maintenance,
    openapi_extra=json_request_body(Maintenance),
)
async def put_maintenance(document: ControlBody, runtime: RuntimeDep) -> dict[str, bool]:
    """While on, every emulated call answers 412 in every process."""
    switch: Maintenance = _parse(Maintenance, document)
    await runtime.db.write(orm(partial(service.set_maintenance, enabled=switch.enabled)))
    return {"enabled": switch.enabled}


@router.get(
    "/test-mails",
    summary="Read the test-mail record",
    operation_id="listTestMails",
    response_model=dict[str, list[TestMailRecord]],
)
async def get_test_mails(
    runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> JSONResponse:
    """Every test-mail attempt, newest first, without passwords."""
    mails = await runtime.db.read(orm(partial(service.list_test_mails, limit=limit)))
    return JSONResponse({"testMails": mails})


@router.delete(
    "/test-mails",
    status_code=204,
    summary="Empty the test-mail record",
    operation_id="clearTestMails",
)
async def delete_test_mails(runtime: RuntimeDep) -> Response:
    """Forget every test-mail attempt."""
    await runtime.db.write(orm(lambda session: TestMailRepository(session).clear()))
    return Response(status_code=204)


@router.post(
    "/test-mail-failures",
    status_code=201,
    summary="Make the next test mails fail",
    operation_id="addTestMailFailure",
    response_model=MailFailure,
    openapi_extra=json_request_body(MailFailureIn),
)
async def post_mail_failure(document: ControlBody, runtime: RuntimeDep) -> dict[str, Any]:
    """The next test mails (all, or `times` of them) end as a failed Job, in either mode."""
    failure: MailFailureIn = _parse(MailFailureIn, document)
    return await runtime.db.write(orm(partial(service.add_mail_failure, failure=failure)))


@router.delete(
    "/test-mail-failures",
    status_code=204,
    summary="Let test mails through again",
    operation_id="clearTestMailFailures",
)
async def delete_mail_failures(runtime: RuntimeDep) -> Response:
    """No injected test-mail failure remains."""
    await runtime.db.write(orm(service.clear_mail_failures))
    return Response(status_code=204)


# `:path`, because an account name may hold a "/" (sent as %2F).
@router.post(
    "/users/{name:path}/unlock",
    summary="Unlock an account",
    operation_id="unlockUser",
    responses={200: {"model": UnlockedUser}},
)
async def unlock(name: str, runtime: RuntimeDep) -> dict[str, Any]:
    """Clear the account's failures and lock; 404 when there is no such account."""
    if "\x00" in name or not await runtime.db.write(orm(partial(unlock_user, name=name))):
        raise ObjectNotFound(f'The user "{name}" was not found.')
    return {"name": name, "locked": False}


def _probe_write(connection: Connection) -> bool:
    return ControlRepository(connection).probe_write()


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
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """200 when the database answers at the newest schema revision and takes a write, else 503.

    A write, because an outside lock (or a lost PostgreSQL) still lets reads through while
    every PUT fails; on SQLite, free space under `MIN_FREE_BYTES` counts as a full disk, and
    every batch checks that the file is still the one opened.
    """
    try:
        ready = (
            await runtime.db.read(is_at_head)
            and runtime.db.has_room()
            and await runtime.db.write(_probe_write)
        )
    except SQLAlchemyError:
        ready = False
    if not ready:
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ready"})
