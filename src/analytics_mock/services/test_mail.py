"""Rules of sendTestMail: which settings and password a test mail uses, and what is recorded.

The stored settings are never changed by a test mail [pick]; the request's `emailSetting`
overlays them for this one attempt only.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.orm import Session

from analytics_mock.crypto import SecretBox
from analytics_mock.db.models import TestMailRow
from analytics_mock.db.repositories import (
    EmailSettingsRepository,
    Executor,
    SettingRecord,
    TestMailRepository,
)
from analytics_mock.errors import ObjectNotFound
from analytics_mock.formats import vendor_time
from analytics_mock.mail import (
    DeliveryOptions,
    DeliveryOutcome,
    FailureKind,
    SmtpTarget,
    build_test_message,
    deliver_test_mail,
)
from analytics_mock.schemas.email_settings import EmailSettingUpdate
from analytics_mock.schemas.test_mail import ACTION_NAME, TestMailIn
from analytics_mock.services.email_settings import merged_view, new_password, to_public

Mode = Literal["smtp", "capture"]


def _stored_row(session: Executor) -> SettingRecord:
    row = EmailSettingsRepository(session).first()
    if row is None:
        raise ObjectNotFound("No email server settings are stored.")
    return row


def stored_setting(session: Executor) -> dict[str, Any]:
    """The EmailSetting a test mail would use without overrides."""
    return to_public(_stored_row(session))


def action_body(href: str, setting: dict[str, Any]) -> dict[str, Any]:
    """The vendor's Action object for the prepare call."""
    return {
        "name": ACTION_NAME,
        "href": href,
        "method": "POST",
        "type": "application/json",
        "parameters": [{"destinationAddresses": [], "emailSetting": setting}],
    }


@dataclass(frozen=True)
class MailPlan:
    """Everything one attempt needs, decided inside a database scope and used outside it."""

    setting: SettingRecord
    recipients: tuple[str, ...]
    password: bytes | None = field(repr=False)

    def target(self) -> SmtpTarget:
        """Where and how to deliver."""
        auth = self.setting.authentication_enabled
        return SmtpTarget(
            hostname=self.setting.hostname,
            port=self.setting.port_number,
            security=self.setting.secure_connection,  # type: ignore[arg-type]
            sender=self.setting.sender_address,
            username=self.setting.user_id if auth else None,
            password=(self.password or b"") if auth else None,
        )


def plan_test_mail(session: Executor, box: SecretBox, test_mail: TestMailIn) -> MailPlan:
    """Overlay the request's settings on the stored ones and pick the password to use."""
    row = _stored_row(session)
    patch = test_mail.emailSetting or EmailSettingUpdate()
    merged = merged_view(row, patch)
    password = new_password(patch)
    if password is None and row.password_encrypted is not None:
        password = box.decrypt(row.password_encrypted)
    return MailPlan(merged, tuple(test_mail.destinationAddresses), password)


@dataclass(frozen=True)
class Attempt:
    """The outcome of one attempt, with its times and the message as built."""

    job_id: str
    mode: Mode
    created: float
    completed: float
    outcome: DeliveryOutcome
    message: str


async def attempt_test_mail(
    plan: MailPlan,
    mode: Mode,
    options: DeliveryOptions,
    clock: Any,
    *,
    injected_failure: str | None = None,
) -> Attempt:
    """Deliver over SMTP, or in capture mode only build the message; never raises for a failure.

    `injected_failure` (a failure kind the test controls asked for) ends the attempt failed
    with that kind, in either mode, without sending anything.
    """
    created = clock()
    target = plan.target()
    message = build_test_message(
        target.sender,
        plan.recipients,
        hostname=target.hostname,
        port=target.port,
        security=target.security,
    )
    if injected_failure is not None:
        outcome = DeliveryOutcome(
            delivered=False,
            failure=FailureKind(injected_failure),
            detail=f"{injected_failure} (injected by the test controls): not sent",
        )
    elif mode == "capture":
        count = len(plan.recipients)
        outcome = DeliveryOutcome(
            delivered=True,
            failure=None,
            detail=f"captured, not sent (test-mail mode capture): {count} recipient(s)",
        )
    else:
        outcome = await deliver_test_mail(target, plan.recipients, options, message=message)
    return Attempt(str(uuid.uuid4()), mode, created, clock(), outcome, message.as_string())


def record_attempt(session: Session, plan: MailPlan, attempt: Attempt) -> None:
    """Keep the attempt for inspection, the password left out."""
    setting = plan.setting
    TestMailRepository(session).add(
        TestMailRow(
            job_id=attempt.job_id,
            created_at=attempt.created,
            completed_at=attempt.completed,
            mode=attempt.mode,
            hostname=setting.hostname,
            port_number=setting.port_number,
            secure_connection=setting.secure_connection,
            authentication_enabled=setting.authentication_enabled,
            user_id=setting.user_id,
            sender_address=setting.sender_address,
            recipients=json.dumps(list(plan.recipients)),
            state="success" if attempt.outcome.delivered else "failed",
            failure=str(attempt.outcome.failure) if attempt.outcome.failure else None,
            detail=attempt.outcome.detail,
            message=attempt.message,
        )
    )


def job_body(plan: MailPlan, attempt: Attempt) -> dict[str, Any]:
    """The vendor's Job object for a finished attempt."""
    outcome = attempt.outcome
    return {
        "instanceID": attempt.job_id,
        "created": vendor_time(attempt.created),
        "updated": vendor_time(attempt.completed),
        "completed": vendor_time(attempt.completed),
        "state": "success" if outcome.delivered else "failed",
        "affectedResource": [],
        "result": [
            {
                "destinationAddresses": list(plan.recipients),
                "failureKind": str(outcome.failure) if outcome.failure else None,
                "message": outcome.detail,
            }
        ],
    }
