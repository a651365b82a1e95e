"""Alembic environment: migrations run as the database's owner role, online only."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

config = context.config


def _run(connection: Connection) -> None:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        # Entry point of `alembic ...` used directly: settings come from the environment.
        # The runtime only reads: migrating never provisions the local stack.
        from backend.runtime import Runtime

        url = Runtime.from_env().db.sqlalchemy_url("owner")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: roles depend on the database")
run_migrations_online()
