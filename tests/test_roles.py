"""Each database role can do exactly what its job needs, and nothing more.

Every statement touches a real (seeded) row, so row triggers fire as well as privilege
checks; each runs in a transaction that is rolled back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors

from backend.db.access import DatabaseAccess

RID = uuid.UUID(int=1)
MID = uuid.UUID(int=2)

INSERT = {
    "raw.records": (
        "insert into raw.records (record_id, source, content_type, payload, digest, member_id,"
        " region, batch_id) values (gen_random_uuid(), 't', 'application/json', '\\x7b7d',"
        " sha256('\\x7b7d'), %(m)s, 'local', gen_random_uuid())"
    ),
    "processed.observations": (
        "insert into processed.observations (member_id, observed_at, code, value, unit, source,"
        " raw_record_id, raw_received_at) values (%(m)s, now(), '8867-4', 61, '/min', 't',"
        " %(r)s, now())"
    ),
    "processed.quarantine": (
        "insert into processed.quarantine (raw_record_id, raw_received_at, reason, record)"
        " values (%(r)s, now(), 'implausible', '{}')"
    ),
    "governance.members": "insert into governance.members (home_region) values ('local')",
}
UPDATE_COLUMN = {
    "raw.records": "source",
    "processed.observations": "source",
    "processed.quarantine": "reason",
    "governance.members": "home_region",
}
OPS = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
ALL = set(OPS)

# What each role may do; everything else must be refused.
ALLOWED: dict[str, dict[str, set[str]]] = {
    "ingest": {"raw.records": {"INSERT"}},
    "refiner": {
        "raw.records": {"SELECT"},
        "processed.observations": {"SELECT", "INSERT"},
        "processed.quarantine": {"SELECT", "INSERT"},
    },
    "query": {
        "processed.observations": {"SELECT"},
        "processed.quarantine": {"SELECT"},
    },
    # The owner owns everything, but the raw zone refuses change even to it.
    "owner": {
        "raw.records": {"SELECT", "INSERT"},
        "processed.observations": ALL,
        "processed.quarantine": ALL,
        "governance.members": ALL,
    },
}


def _statement(table: str, op: str) -> str:
    return {
        "SELECT": f"select count(*) from {table}",
        "INSERT": INSERT[table],
        "UPDATE": f"update {table} set {UPDATE_COLUMN[table]} = {UPDATE_COLUMN[table]}",
        "DELETE": f"delete from {table}",
        "TRUNCATE": f"truncate {table}",
    }[op]


@pytest.fixture(scope="module")
def seeded(migrated_db: DatabaseAccess) -> Iterator[DatabaseAccess]:
    with migrated_db.connect("owner") as conn:
        for table in INSERT:
            conn.execute(INSERT[table], {"m": MID, "r": RID})
    yield migrated_db


CASES = [(role, table, op) for role in ALLOWED for table in INSERT for op in OPS]


@pytest.mark.parametrize(("role", "table", "op"), CASES, ids=[f"{r}-{t}-{o}" for r, t, o in CASES])
def test_role_matrix(seeded: DatabaseAccess, role: str, table: str, op: str) -> None:
    allowed = op in ALLOWED[role].get(table, set())
    with seeded.connect(role) as conn:
        try:
            cur = conn.execute(_statement(table, op), {"m": MID, "r": RID})
            if op in ("UPDATE", "DELETE"):
                # the seeded row was really touched, so row-level triggers had their say
                assert cur.rowcount >= 1
            outcome = "allowed"
        except errors.InsufficientPrivilege as e:
            outcome = "refused"
            message = str(e)
        finally:
            conn.rollback()
    assert outcome == ("allowed" if allowed else "refused"), (role, table, op)
    if outcome == "refused" and role == "owner":
        assert "raw zone is immutable" in message


def test_raw_rows_survive_every_attempt(seeded: DatabaseAccess) -> None:
    """After the whole matrix, the seeded raw row is still there, unchanged."""
    with seeded.connect("owner") as conn:
        rows = conn.execute("select source, payload from raw.records").fetchall()
    assert rows == [("t", b"{}")]


def test_erasure_hook_allows_delete_only_inside_the_procedure_flag(
    seeded: DatabaseAccess,
) -> None:
    with seeded.connect("owner") as conn:
        conn.execute("set local rejuve.raw_erasure = 'on'")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("update raw.records set source = 'x'")
        conn.rollback()
        conn.execute("set local rejuve.raw_erasure = 'on'")
        assert conn.execute("delete from raw.records").rowcount == 1
        conn.rollback()


def test_no_role_is_superuser_or_can_create_roles(seeded: DatabaseAccess) -> None:
    with seeded.connect("owner") as conn:
        rows = conn.execute(
            "select rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls"
            " from pg_roles where rolname = any(%s)",
            (list(seeded.roles.app.values()),),
        ).fetchall()
    assert len(rows) == 3
    assert all(not any(flags) for _, *flags in rows)


def test_application_roles_cannot_create_objects(seeded: DatabaseAccess) -> None:
    for role in seeded.roles.app:
        for schema in ("public", "raw", "processed", "analytics", "governance"):
            with seeded.connect(role) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"create table {schema}.intruder (x int)")
