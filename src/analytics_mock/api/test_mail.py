"""Routes of the sendTestMail action: prepare (GET) and invoke (POST)."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from analytics_mock.api.dependencies import read_json, require_admin, runtime_of, validate_body
from analytics_mock.api.openapi import json_request_body
from analytics_mock.api.responses import error_responses
from analytics_mock.api.routes import DirectRoute
from analytics_mock.db.engine import orm
from analytics_mock.mail import DeliveryOptions
from analytics_mock.runtime import Runtime
from analytics_mock.schemas.test_mail import Job, SendTestMailAction, SendTestMailActionIn
from analytics_mock.services import test_mail as service
from analytics_mock.services.controls import take_mail_failure

ACTION_PATH = "/services/EmailServerSettings/actions/sendTestMail"

router = APIRouter(prefix="/Analytics/v1", tags=["EmailServerSettings"], route_class=DirectRoute)


def delivery_options(runtime: Runtime) -> DeliveryOptions:
    """The SMTP client's limits and trust, from the settings."""
    settings = runtime.settings
    return DeliveryOptions(
        timeout=settings.smtp_timeout,
        connect_timeout=min(settings.smtp_connect_timeout, settings.smtp_timeout),
        verify_tls=settings.smtp_verify_tls,
        ca_file=str(settings.smtp_ca_file) if settings.smtp_ca_file else None,
    )


@router.get(
    ACTION_PATH,
    summary="Prepare a test mail",
    operation_id="prepareSendTestMail",
    response_class=JSONResponse,
    responses={200: {"model": SendTestMailAction}, **error_responses(400, 401, 403, 404, 406, 412)},
)
async def prepare_test_mail(request: Request) -> JSONResponse:
    """GET the Action to invoke, with the stored settings as its parameter."""
    await require_admin(request)
    setting = await runtime_of(request).db.read(service.stored_setting)
    href = str(request.url.replace(path=request.url.path + "/invoke", query=""))
    return JSONResponse(service.action_body(href, setting))


@router.post(
    ACTION_PATH + "/invoke",
    summary="Send a test mail",
    operation_id="invokeSendTestMail",
    response_class=JSONResponse,
    responses={200: {"model": Job}, **error_responses(400, 401, 403, 404, 406, 412, 413, 415)},
    openapi_extra=json_request_body(SendTestMailActionIn),
)
async def invoke_test_mail(request: Request) -> JSONResponse:
    """POST the Action: send one test mail and answer with the finished Job."""
    await require_admin(request)
    runtime = runtime_of(request)
    document = await read_json(request)
    action = validate_body(SendTestMailActionIn, document, what="the sendTestMail Action")

    test_mail = action.parameters[0]

    def plan(session: Session) -> tuple[service.MailPlan, str | None]:
        # An injected failure is used up in the same transaction that reads the settings.
        return service.plan_test_mail(session, runtime.box, test_mail), take_mail_failure(session)

    mail_plan, failure = await runtime.db.write(orm(plan))
    # Delivery is asyncio all the way, so other requests are served while a mail is in flight.
    attempt = await service.attempt_test_mail(
        mail_plan,
        runtime.settings.test_mail_mode,
        delivery_options(runtime),
        runtime.clock,
        injected_failure=failure,
    )

    await runtime.db.write(orm(partial(service.record_attempt, plan=mail_plan, attempt=attempt)))
    return JSONResponse(service.job_body(mail_plan, attempt))
