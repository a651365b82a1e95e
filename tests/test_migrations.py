"""Migrations build the zones from an empty database and take them away cleanly."""

from __future__ import annotations

from backend.db import migrate
from backend.db.access import DatabaseAccess

ZONES = {"raw", "processed", "analytics", "governance"}


def _schemas(access: DatabaseAccess) -> set[str]:
    with access.connect("owner") as conn:
        rows = conn.execute("select nspname from pg_namespace").fetchall()
    return {r[0] for r in rows} & ZONES


def _hypertables(access: DatabaseAccess) -> dict[str, str]:
    with access.connect("owner") as conn:
        rows = conn.execute(
            """select h.hypertable_schema || '.' || h.hypertable_name, d.time_interval::text
               from timescaledb_information.hypertables h
               join timescaledb_information.dimensions d using (hypertable_schema, hypertable_name)
               """
        ).fetchall()
    return {r[0]: r[1] for r in rows}


def _roles(access: DatabaseAccess) -> set[str]:
    with access.connect("owner") as conn:
        rows = conn.execute(
            "select rolname from pg_roles where rolname = any(%s)",
            (list(access.roles.app.values()),),
        ).fetchall()
    return {r[0] for r in rows}


def test_upgrade_from_empty_then_downgrade_cleanly(scratch_db: DatabaseAccess) -> None:
    assert migrate.current(scratch_db) is None
    assert _schemas(scratch_db) == set()

    migrate.upgrade(scratch_db)

    assert migrate.current(scratch_db) == migrate.head()
    assert _schemas(scratch_db) == ZONES
    assert _hypertables(scratch_db) == {
        "raw.records": "1 day",
        "processed.observations": "12:00:00",
        "analytics.rollup_hourly": "7 days",
        "analytics.rollup_daily": "90 days",
    }
    assert _roles(scratch_db) == set(scratch_db.roles.app.values())

    migrate.downgrade(scratch_db, "base")

    assert migrate.current(scratch_db) is None
    assert _schemas(scratch_db) == set()
    assert _hypertables(scratch_db) == {}
    assert _roles(scratch_db) == set()

    # and up again: a downgrade leaves nothing behind that would trip a fresh upgrade
    migrate.upgrade(scratch_db)
    assert _schemas(scratch_db) == ZONES


def test_upgrade_is_idempotent(scratch_db: DatabaseAccess) -> None:
    migrate.upgrade(scratch_db)
    migrate.upgrade(scratch_db)
    assert migrate.current(scratch_db) == migrate.head()


def test_application_roles_log_in_only_after_migration(scratch_db: DatabaseAccess) -> None:
    migrate.upgrade(scratch_db)
    for key in scratch_db.roles.app:
        with scratch_db.connect(key) as conn:
            assert conn.execute("select current_user").fetchone() == (scratch_db.user_for(key),)
