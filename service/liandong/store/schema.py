"""The tables, as SQLAlchemy Core metadata. The schema itself is made by the Alembic migrations in
store/migrations; these definitions must agree with the latest one (a test compares them)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("ruleset", sa.String(200), nullable=False),
    sa.Column("version", sa.String(100), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rev", sa.BigInteger, nullable=False),
    sa.Column("level_code", sa.String(100), nullable=True),  # the command level in force
    sa.Column("level_rank", sa.Integer, nullable=False),
    sa.Column("opened_at", sa.BigInteger, nullable=False),  # microseconds since the epoch, UTC
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("record", sa.Text, nullable=False),  # the Record as JSON
)
sa.Index("ix_incidents_updated", incidents.c.updated_at, incidents.c.id)

history = sa.Table(
    "incident_history",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.String(200), nullable=False, index=True),
    sa.Column("rev", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("caller", sa.String(300), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

events = sa.Table(
    "incident_events",
    metadata,
    sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("incident_id", sa.String(200), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("rev", sa.BigInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)

clocks = sa.Table(
    "incident_clocks",
    metadata,
    sa.Column("incident_id", sa.String(200), primary_key=True),
    sa.Column("obligation_id", sa.String(200), primary_key=True),
    sa.Column("due_at", sa.BigInteger, nullable=False, index=True),
)

# One row, 'events': the last sequence given out. Taking it with an UPDATE locks it to the end of the
# transaction, so sequences are committed in the order they are given and a watcher never skips one.
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
