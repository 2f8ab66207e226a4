"""Delivery of the `sendTestMail` test message over SMTP."""

from analytics_mock.mail.delivery import (
    DeliveryOptions,
    DeliveryOutcome,
    FailureKind,
    SecureConnection,
    SmtpTarget,
    deliver_test_mail,
)
from analytics_mock.mail.message import build_test_message

__all__ = [
    "DeliveryOptions",
    "DeliveryOutcome",
    "FailureKind",
    "SecureConnection",
    "SmtpTarget",
    "build_test_message",
    "deliver_test_mail",
]
