"""The users file's hash an account was loaded from, so that a hash upgraded at login survives.

The users table (and the sessions table, which refers to it) is built anew, its rows kept,
rather than altered, so that it is the table an empty database gets from the models, on SQLite
to the letter.

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


def upgrade() -> None:
    _rebuild(new=True)


def downgrade() -> None:
    _rebuild(new=False)
