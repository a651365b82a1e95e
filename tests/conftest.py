"""Tests run against the real local stack that `make test` brings up.

Settings come from the environment here, at the test suite's entry point, as they
would for any other entry point."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from backend.db import migrate
from backend.db.access import DatabaseAccess, scram_verifier
from backend.db.roles import Roles
from backend.stack import supervisor
from backend.stack.context import StackContext


@pytest.fixture(scope="session")
def ctx() -> StackContext:
    context = StackContext.from_env()
    down = [s.name for s in supervisor.status(context) if s.state not in ("up", "external")]
    if down:
        pytest.exit(
            f"the local stack is not running ({', '.join(down)} down): run `make test`",
            returncode=3,
        )
    return context


def _password() -> str:
    return "t" + secrets.token_urlsafe(18)


def create_scratch_database(ctx: StackContext) -> DatabaseAccess:
    """A database of its own with its own owner and role set, as bootstrap makes them."""
    name = f"rejuve_t{secrets.token_hex(4)}"
    roles = Roles(name)
    passwords = {"owner": _password(), **{k: _password() for k in roles.app}}
    with ctx.db.connect("super", "postgres", autocommit=True) as conn:
        verifier = scram_verifier(conn, roles.owner, passwords["owner"])
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                sql.Identifier(roles.owner), sql.Literal(verifier)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(roles.owner)
            )
        )
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
    return ctx.db.for_database(name, {**passwords, "super": ctx.db.passwords["super"]})


def drop_scratch_database(ctx: StackContext, access: DatabaseAccess) -> None:
    roles = access.roles
    with ctx.db.connect("super", "postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(access.dbname))
        )
        for role in (*roles.app.values(), roles.owner):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def scratch_db(ctx: StackContext) -> Iterator[DatabaseAccess]:
    """An empty database; dropped (with its roles) afterwards."""
    access = create_scratch_database(ctx)
    try:
        yield access
    finally:
        drop_scratch_database(ctx, access)


@pytest.fixture(scope="module")
def migrated_db(ctx: StackContext) -> Iterator[DatabaseAccess]:
    """A database migrated to head, shared by a module's tests (which must not commit)."""
    access = create_scratch_database(ctx)
    try:
        migrate.upgrade(access)
        yield access
    finally:
        drop_scratch_database(ctx, access)


def connect(access: DatabaseAccess, role: str) -> psycopg.Connection:
    return access.connect(role)
