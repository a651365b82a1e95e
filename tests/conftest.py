"""Tests run against the real local stack that `make test` brings up.

Settings come from the environment here, at the test suite's entry point, as they
would for any other entry point; the suite reaches the stack through the read-only
runtime (`backend.runtime.Runtime`), as the backend and the flows do.

A test that uses the `ctx` fixture (itself or through another fixture) needs the stack
and is marked `stack` here, so `pytest -m "not stack"` runs the rest with the stack down."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql

from backend.db import migrate
from backend.db.access import DatabaseAccess, scram_verifier
from backend.db.roles import Roles
from backend.exceptions import UserError
from backend.runtime import Runtime

if TYPE_CHECKING:
    from backend.stack.context import StackContext

# Fixtures that need a stack: the running one (`ctx`), or servers a test brings up itself
# (`stack_env` in tests/test_stack_cli.py: a whole second stack; `hub` in
# tests/identity/test_hub.py: a JupyterHub that spawns notebook servers as system users).
STACK_FIXTURES = frozenset({"ctx", "stack_env", "hub"})
# Test modules that drive the running stack only through `rejuve` in a subprocess, so no
# fixture shows it.
STACK_MODULES = frozenset({"test_cli_data.py"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if (
            STACK_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            or item.path.name in STACK_MODULES
        ):
            item.add_marker(pytest.mark.stack)


def _stack_down(runtime: Runtime) -> str | None:
    """Why the stack cannot serve the tests, or None: its database and backend answer."""
    import ssl

    import httpx

    try:
        with runtime.db.connect("owner", connect_timeout=3) as conn:
            conn.execute("select 1")
    except (psycopg.Error, UserError) as e:
        return f"the database does not answer ({type(e).__name__})"
    try:
        tls = ssl.create_default_context(cafile=str(runtime.ca_file))
        httpx.get(f"{runtime.backend_url}/healthz", verify=tls, timeout=5)
    except (httpx.HTTPError, OSError) as e:
        return f"the backend does not answer ({type(e).__name__})"
    return None


@pytest.fixture(scope="session")
def ctx() -> Runtime:
    try:
        runtime = Runtime.from_env()
        why = _stack_down(runtime)
    except UserError as e:
        why = str(e)
    if why:
        pytest.exit(
            f"the local stack is not running ({why}): run `make test`, or "
            '`pytest -m "not stack"` for the tests that need none',
            returncode=3,
        )
    return runtime


@pytest.fixture(scope="session")
def stack(ctx: Runtime) -> StackContext:
    """The local stack on top of the runtime, for tests that stop and start its services."""
    from backend.stack.context import StackContext

    return StackContext.from_settings(ctx.settings)


def _password() -> str:
    return "t" + secrets.token_urlsafe(18)


def create_scratch_database(ctx: Runtime) -> DatabaseAccess:
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


def drop_scratch_database(ctx: Runtime, access: DatabaseAccess) -> None:
    roles = access.roles
    with ctx.db.connect("super", "postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(access.dbname))
        )
        for role in (*roles.app.values(), roles.owner):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def scratch_db(ctx: Runtime) -> Iterator[DatabaseAccess]:
    """An empty database; dropped (with its roles) afterwards."""
    access = create_scratch_database(ctx)
    try:
        yield access
    finally:
        drop_scratch_database(ctx, access)


@pytest.fixture(scope="module")
def migrated_db(ctx: Runtime) -> Iterator[DatabaseAccess]:
    """A database migrated to head, shared by a module's tests (which must not commit)."""
    access = create_scratch_database(ctx)
    try:
        migrate.upgrade(access)
        yield access
    finally:
        drop_scratch_database(ctx, access)


def connect(access: DatabaseAccess, role: str) -> psycopg.Connection:
    return access.connect(role)
