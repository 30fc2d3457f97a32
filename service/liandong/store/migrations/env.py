"""Alembic's environment: migrate the connection store.sql.migrate hands over (never a URL of its own)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Two replicas starting at once: one migrates, the other waits and then finds nothing to do.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(4262)")
    context.run_migrations()
