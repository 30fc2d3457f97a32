"""Incidents, their history, events, clocks and the event counter.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("ruleset", sa.String(200), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rev", sa.BigInteger, nullable=False),
        sa.Column("level_code", sa.String(100), nullable=True),
        sa.Column("level_rank", sa.Integer, nullable=False),
        sa.Column("opened_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("ix_incidents_updated", "incidents", ["updated_at", "id"])
    op.create_table(
        "incident_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(200), nullable=False),
        sa.Column("rev", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("caller", sa.String(300), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_incident_history_incident_id", "incident_history", ["incident_id"])
    op.create_table(
        "incident_events",
        sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("incident_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("rev", sa.BigInteger, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_incident_events_incident_id", "incident_events", ["incident_id"])
    op.create_table(
        "incident_clocks",
        sa.Column("incident_id", sa.String(200), primary_key=True),
        sa.Column("obligation_id", sa.String(200), primary_key=True),
        sa.Column("due_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_incident_clocks_due_at", "incident_clocks", ["due_at"])
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(counters, [{"name": "events", "value": 0}])


def downgrade() -> None:
    for table in ("counters", "incident_clocks", "incident_events", "incident_history", "incidents"):
        op.drop_table(table)
