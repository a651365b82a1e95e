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
        " region, batch_id, key_id) values (gen_random_uuid(), 't', 'application/json',"
        " '\\x7b7d', sha256('\\x7b7d'), %(m)s, 'local', gen_random_uuid(), 'k')"
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
    "governance.audit_log": (
        "insert into governance.audit_log (seq, at, request_id, actor, action, resource,"
        " outcome, prev_hash, hash) values ((random() * 1e9)::bigint + 1000, now(),"
        " gen_random_uuid(), 't', 'read', 'x', 'allowed', '', '')"
    ),
    "governance.consent_events": (
        "insert into governance.consent_events (member_id, purpose, category, action,"
        " consent_version, recorded_by) values (%(m)s, 'coaching', 'wearables', 'grant',"
        " 'v1', 't')"
    ),
    "governance.casbin_rule": "insert into governance.casbin_rule (ptype, v0) values ('p', 't')",
    "governance.coach_assignments": (
        "insert into governance.coach_assignments (coach, member_id)"
        " values (gen_random_uuid()::text, %(m)s)"
    ),
    "raw.batches": (
        "insert into raw.batches (batch_id, source, format, member_id, record_count, byte_count,"
        " digest) values (gen_random_uuid(), 't', 'omh', %(m)s, 1, 2, sha256('x'))"
    ),
    "governance.sources": (
        "insert into governance.sources (source, key_hash, key_prefix)"
        " values (gen_random_uuid()::text, sha256('k'), 'rk_')"
    ),
    "processed.batch_ledger": (
        "insert into processed.batch_ledger (batch_id, parsed, processed, quarantined,"
        " duplicate, records_read) values (gen_random_uuid(), 1, 1, 0, 0, 1)"
    ),
    "analytics.batch_quality": (
        "insert into analytics.batch_quality (batch_id, source, format, received_at,"
        " completeness, validity_rate, duplicate_rate, refine_lag_s)"
        " values (gen_random_uuid(), 't', 'omh', now(), 1, 1, 0, 0.1)"
    ),
}
UPDATE_COLUMN = {
    "raw.records": "source",
    "processed.observations": "source",
    "processed.quarantine": "status",
    "governance.members": "home_region",
    "raw.batches": "source",
    "governance.sources": "key_prefix",
    "processed.batch_ledger": "parsed",
    "analytics.batch_quality": "completeness",
    "governance.audit_log": "actor",
    "governance.consent_events": "purpose",
    "governance.casbin_rule": "v0",
    "governance.coach_assignments": "coach",
}
OPS = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
ALL = set(OPS)

# What each role may do; everything else must be refused.
ALLOWED: dict[str, dict[str, set[str]]] = {
    # Ingest lands payloads; it reads batch manifests (idempotency) and source keys only.
    "ingest": {
        "raw.records": {"INSERT"},
        "raw.batches": {"SELECT", "INSERT"},
        "governance.sources": {"SELECT"},
        # the member_id column only: landing refuses members that are not enrolled
        "governance.members": {"SELECT"},
    },
    "refiner": {
        "raw.records": {"SELECT"},
        "raw.batches": {"SELECT"},
        "processed.observations": {"SELECT", "INSERT"},
        # UPDATE of the resolution columns only (status here): see the test below
        "processed.quarantine": {"SELECT", "INSERT", "UPDATE"},
        "processed.batch_ledger": {"SELECT", "INSERT"},
        "analytics.batch_quality": {"SELECT", "INSERT"},
    },
    # The backend's read role: it also reads the governance data every query applies
    # (consent, coach assignments, members), never writes.
    "query": {
        "processed.observations": {"SELECT"},
        "processed.quarantine": {"SELECT"},
        "processed.batch_ledger": {"SELECT"},
        "analytics.batch_quality": {"SELECT"},
        "governance.members": {"SELECT"},
        "governance.coach_assignments": {"SELECT"},
    },
    # The backend's governance writer: the audit log only through audit_append (so the
    # hash chain cannot be bypassed), consent append-only, policy and assignments.
    "backend": {
        # UPDATE of the resolution columns only, for a steward's reject: see below
        "processed.quarantine": {"SELECT", "UPDATE"},
        "governance.members": {"SELECT", "INSERT"},
        "governance.audit_log": {"SELECT"},
        "governance.consent_events": {"SELECT", "INSERT"},
        "governance.casbin_rule": {"SELECT", "INSERT", "UPDATE", "DELETE"},
        "governance.coach_assignments": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    },
    # The owner owns everything, but the raw zone refuses change even to it.
    "owner": {
        "raw.records": {"SELECT", "INSERT"},
        "raw.batches": {"SELECT", "INSERT"},
        "processed.observations": ALL,
        "processed.quarantine": ALL,
        "governance.members": ALL,
        "governance.sources": ALL,
        "processed.batch_ledger": ALL,
        "analytics.batch_quality": ALL,
        "governance.audit_log": {"SELECT", "INSERT"},
        "governance.consent_events": {"SELECT", "INSERT"},
        "governance.casbin_rule": ALL,
        "governance.coach_assignments": ALL,
    },
}


def _statement(table: str, op: str) -> str:
    return {
        "SELECT": f"select count(*) from {table}",
        "INSERT": INSERT[table],
        "UPDATE": f"update {table} set {UPDATE_COLUMN[table]} = {UPDATE_COLUMN[table]}",
        "DELETE": f"delete from {table}",
        # cascade: enrolments (governance.source_members) reference members and sources
        "TRUNCATE": f"truncate {table} cascade",
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
        assert "raw zone is immutable" in message or "is append-only" in message


@pytest.mark.parametrize("role", ["refiner", "backend"])
def test_may_resolve_but_not_rewrite_quarantine(seeded: DatabaseAccess, role: str) -> None:
    with seeded.connect(role) as conn:
        conn.execute("update processed.quarantine set resolution_note = 'checked'")
        conn.rollback()
        for column in ("reason", "record", "member_id"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(f"update processed.quarantine set {column} = {column}")
            conn.rollback()


def test_raw_rows_survive_every_attempt(seeded: DatabaseAccess) -> None:
    """After the whole matrix, the seeded raw row is still there, unchanged."""
    with seeded.connect("owner") as conn:
        rows = conn.execute("select source, payload from raw.records").fetchall()
    assert rows == [("t", b"{}")]
    with seeded.connect("owner") as conn:
        assert conn.execute("select count(*) from raw.batches").fetchone() == (1,)


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
    assert len(rows) == len(seeded.roles.app)
    assert all(not any(flags) for _, *flags in rows)


def test_application_roles_cannot_create_objects(seeded: DatabaseAccess) -> None:
    for role in seeded.roles.app:
        for schema in ("public", "raw", "processed", "analytics", "governance"):
            with seeded.connect(role) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"create table {schema}.intruder (x int)")
