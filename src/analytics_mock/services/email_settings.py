"""Rules of the EmailServerSettings resource: listing, partial update, password semantics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from analytics_mock.crypto import SecretBox
from analytics_mock.db.models import EmailSettingRow
from analytics_mock.db.repositories import (
    EMAIL_SETTING_FIELDS,
    EmailSettingsRepository,
    Executor,
    SettingRecord,
)
from analytics_mock.errors import DomainError, InvalidMember, MissingMember, ObjectNotFound
from analytics_mock.query.filter_parser import Node
from analytics_mock.query.sql import OrderTerm, compile_filter, compile_order_by
from analytics_mock.schemas.email_settings import EmailSettingUpdate
from analytics_mock.validation import SMTP_PASSWORD_RULE, smtp_password

DEFAULT_INSTANCE_ID = "mailServerSetting#0"


def default_setting() -> EmailSettingRow:
    """The object a fresh store holds [pick]."""
    return EmailSettingRow(
        instance_id=DEFAULT_INSTANCE_ID,
        hostname="localhost",
        port_number=25,
        secure_connection="Plain",
        authentication_enabled=False,
        user_id=None,
        password_encrypted=None,
        sender_address="analytics@localhost",
    )


def to_public(row: SettingRecord) -> dict[str, Any]:
    """The 7 members every response shows, in the vendor's order."""
    return {
        "instanceID": row.instance_id,
        "hostname": row.hostname,
        "authenticationEnabled": row.authentication_enabled,
        "userId": row.user_id,
        "senderAddress": row.sender_address,
        "secureConnection": row.secure_connection,
        "portNumber": row.port_number,
    }


@dataclass(frozen=True)
class ListWindow:
    """What a list call selects: a filter, an order, and a window given either way."""

    where: Node | None
    order_by: tuple[OrderTerm, ...]
    offset: int
    count: int
    page: int | None = None  # set together with count as pageSize when page/pageSize were sent


def list_settings(session: Executor, dialect: str, window: ListWindow) -> dict[str, Any]:
    """The Collections envelope for `window`; filtering, ordering and paging run in SQL."""
    where = compile_filter(window.where, EMAIL_SETTING_FIELDS, dialect) if window.where else None
    order = compile_order_by(list(window.order_by), EMAIL_SETTING_FIELDS, dialect)
    total, rows = EmailSettingsRepository(session).page(where, order, window.offset, window.count)
    body: dict[str, Any] = {"data": [to_public(row) for row in rows]}
    if total > 0:
        page = window.page if window.page is not None else window.offset // window.count + 1
        body["pagination"] = {
            "page": page,
            "pageSize": window.count,
            "numPages": -(-total // window.count),
            "totalCount": total,
        }
    body["count"] = total
    return body


def new_password(patch: EmailSettingUpdate) -> bytes | None:
    """The password to store, or None to keep the stored one."""
    if not patch.updatePassword:
        return None
    if patch.password is None:
        raise MissingMember('The member "password" is required when updatePassword is true.')
    decoded = smtp_password(patch.password) if isinstance(patch.password, str) else None
    if decoded is None:
        raise InvalidMember(f'The member "password" {SMTP_PASSWORD_RULE}.')
    return decoded


def patch_members(patch: EmailSettingUpdate) -> dict[str, Any]:
    """The patch's members by column, the password aside; None keeps the stored value."""
    return {
        "hostname": patch.hostname,
        "port_number": patch.portNumber,
        "secure_connection": patch.secureConnection,
        "authentication_enabled": patch.authenticationEnabled,
        "user_id": patch.userId,
        "sender_address": patch.senderAddress,
    }


def merged_view(row: SettingRecord, patch: EmailSettingUpdate) -> SettingRecord:
    """`row` with the patch's non-null members applied, checked across fields."""
    merged = row.with_members(patch_members(patch))
    check_members(merged)
    return merged


def check_members(record: SettingRecord) -> None:
    """Refuse an object whose members contradict each other."""
    if record.authentication_enabled and record.user_id is None:
        raise MissingMember('The member "userId" is required when authenticationEnabled is true.')


def update_setting(
    session: Executor, box: SecretBox, instance_id: str, patch: EmailSettingUpdate
) -> dict[str, Any]:
    """Apply a partial update to one object and return it as the response shows it.

    The update is one statement (no read before it). What must be refused is found after it,
    in the vendor's order (404, the members, the password), and raised: the unit's savepoint,
    which the runner gives every write, undoes the update.
    """
    # No stored id holds a NUL, and PostgreSQL refuses one in a query.
    if "\x00" in instance_id:
        raise ObjectNotFound(f'The object "{instance_id}" was not found.')
    refusal: DomainError | None = None
    try:
        password = new_password(patch)
    except DomainError as exc:
        password, refusal = None, exc
    members = {
        **patch_members(patch),
        "password_encrypted": box.encrypt(password) if password is not None else None,
    }
    updated = EmailSettingsRepository(session).update(instance_id, members)
    if updated is None:
        raise ObjectNotFound(f'The object "{instance_id}" was not found.')
    check_members(updated)
    if refusal is not None:
        raise refusal
    return to_public(updated)


def ensure_default_setting(session: Session) -> None:
    """Seed the default object into an empty store."""
    repo = EmailSettingsRepository(session)
    if repo.count() == 0:
        repo.add_if_absent(default_setting())
