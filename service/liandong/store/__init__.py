"""Where incidents are kept: one interface (store.base), SQLite and PostgreSQL through SQLAlchemy Core."""
