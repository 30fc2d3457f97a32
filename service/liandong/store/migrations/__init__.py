"""Alembic migrations of the incident store; run at start by store.sql.migrate."""
