"""Account upkeep: the users file's hash an account was loaded from (so that a hash upgraded at
login survives a restart), and a count of failed logins that named no account.

The tables (users, sessions, which refers to it, and control) are built anew, their rows
kept, rather than altered, so that they are the tables an empty database gets from the models,
on SQLite to the letter.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_USER_COLUMNS = ("name", "password_hash", "permissions", "failed_logins", "locked")
_SESSION_COLUMNS = ("token_hash", "user_name", "created_at", "last_used_at")
_CONTROL_COLUMNS = ("id", "maintenance", "generation")


def _rows(name: str, columns: Sequence[str]) -> list[dict[str, object]]:
    table = sa.table(name, *(sa.column(column) for column in columns))
    return [dict(row._mapping) for row in op.get_bind().execute(sa.select(table))]


def _rebuild(new: bool) -> None:
    users, sessions = _rows("users", _USER_COLUMNS), _rows("sessions", _SESSION_COLUMNS)
    op.drop_index("ix_sessions_last_used_at", "sessions")
    op.drop_index("ix_sessions_user_name", "sessions")
    op.drop_table("sessions")
    op.drop_table("users")
    user_columns: list[sa.Column[object]] = [
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("permissions", sa.String(255), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked", sa.Boolean(), nullable=False),
    ]
    if new:
        user_columns.append(sa.Column("source_hash", sa.Text(), nullable=True))
    users_table = op.create_table("users", *user_columns)
    sessions_table = op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "user_name",
            sa.String(255),
            sa.ForeignKey("users.name", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_used_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_sessions_user_name", "sessions", ["user_name"])
    op.create_index("ix_sessions_last_used_at", "sessions", ["last_used_at"])
    if users:
        op.bulk_insert(users_table, users)
    if sessions:
        op.bulk_insert(sessions_table, sessions)


def _rebuild_control(new: bool) -> None:
    rows = _rows("control", _CONTROL_COLUMNS)
    op.drop_table("control")
    columns: list[sa.Column[object]] = [
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("maintenance", sa.Boolean(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
    ]
    if new:
        columns.append(
            sa.Column("unknown_failures", sa.Integer(), nullable=False, server_default="0")
        )
    control = op.create_table("control", *columns)
    if rows:
        op.bulk_insert(control, rows)


def upgrade() -> None:
    _rebuild(new=True)
    _rebuild_control(new=True)


def downgrade() -> None:
    _rebuild_control(new=False)
    _rebuild(new=False)
