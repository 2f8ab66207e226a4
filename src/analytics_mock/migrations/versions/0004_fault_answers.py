"""Fault rules with custom answers, jitter and connection resets; injected test-mail failures.

The fault table is built anew (its rules kept) rather than altered, so that it is the table an
empty database gets from the models, on SQLite to the letter.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEPT = ("method", "path_pattern", "status", "message", "delay_ms", "drop", "remaining")


def _columns(new: bool) -> list[sa.Column[object]]:
    columns: list[sa.Column[object]] = [
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("method", sa.String(16), nullable=True),
        sa.Column("path_pattern", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("delay_ms", sa.Integer(), nullable=False),
        sa.Column("drop", sa.Boolean(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    ]
    if new:
        columns += [
            sa.Column("answer", sa.String(16), nullable=True),
            sa.Column("headers", sa.Text(), nullable=True),
            sa.Column("body", sa.Text(), nullable=True),
            sa.Column("jitter_ms", sa.Integer(), nullable=False, server_default=sa.text("0")),
            sa.Column("seed", sa.Integer(), nullable=True),
        ]
    return columns


def _rebuild(new: bool) -> None:
    # The rules are few (test controls): read, rebuild, write back in their order.
    old = sa.table("faults", *(sa.column(name) for name in ("id", *_KEPT, "created_at")))
    bind = op.get_bind()
    rows = [dict(row._mapping) for row in bind.execute(sa.select(old).order_by(old.c.id))]
    op.drop_table("faults")
    faults = op.create_table("faults", *_columns(new))
    if rows:
        op.bulk_insert(faults, [{k: v for k, v in row.items() if k != "id"} for row in rows])


def upgrade() -> None:
    _rebuild(new=True)
    op.create_table(
        "mail_failures",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("failure_kind", sa.String(32), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("mail_failures")
    _rebuild(new=False)
