"""Request journal, fault rules and the shared control switches.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "journal",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
    )
    op.create_index("ix_journal_created_at", "journal", ["created_at"])
    op.create_table(
        "faults",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("method", sa.String(16), nullable=True),
        sa.Column("path_pattern", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("delay_ms", sa.Integer(), nullable=False),
        sa.Column("drop", sa.Boolean(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    control = op.create_table(
        "control",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("maintenance", sa.Boolean(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
    )
    op.bulk_insert(control, [{"id": 1, "maintenance": False, "generation": 0}])


def downgrade() -> None:
    op.drop_table("control")
    op.drop_table("faults")
    op.drop_table("journal")
