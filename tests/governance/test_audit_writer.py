"""Group commit of audit records: many requests' records in one transaction, each caller
released only once its own record is committed, the chain intact, and a record the
database refuses failing alone."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import psycopg
import pytest
from psycopg import errors

from backend.db import migrate
from backend.db.access import DatabaseAccess
from backend.governance import audit
from backend.governance.audit_writer import AuditWriter
from tests.governance.test_audit import _event


@pytest.fixture
def db(scratch_db: DatabaseAccess) -> DatabaseAccess:
    migrate.upgrade(scratch_db)
    return scratch_db


def _writer(db: DatabaseAccess) -> AuditWriter:
    def connect() -> AbstractContextManager[psycopg.Connection]:
        return db.connect("backend")

    return AuditWriter(connect)


def test_concurrent_records_share_transactions_and_keep_one_chain(db: DatabaseAccess) -> None:
    writer = _writer(db)
    try:
        with ThreadPoolExecutor(32) as pool:
            seqs = list(pool.map(writer.write, [_event(i) for i in range(400)]))
    finally:
        writer.close()
    assert sorted(seqs) == list(range(1, 401))
    with db.connect("backend") as conn:
        rows, transactions = conn.execute(
            "select count(*), count(distinct xmin::text) from governance.audit_log"
        ).fetchone() or (0, 0)
        # The number each caller got back is its own record's.
        by_seq = dict(conn.execute("select seq, params->>'n' from governance.audit_log"))
        assert audit.verify(conn).ok
    assert rows == 400
    assert transactions < 400  # grouped: fewer commits than records
    assert all(by_seq[seq] == str(i) for i, seq in enumerate(seqs))


def test_a_refused_record_fails_alone(db: DatabaseAccess) -> None:
    writer = _writer(db)
    bad = dataclasses.replace(_event(1), outcome="maybe")  # the table's CHECK refuses it
    try:
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(writer.write, _event(i) if i != 7 else bad) for i in range(64)]
            outcomes = [f.exception() for f in futures]
    finally:
        writer.close()
    assert isinstance(outcomes[7], errors.CheckViolation)
    assert sum(o is None for o in outcomes) == 63
    with db.connect("backend") as conn:
        n = conn.execute("select count(*) from governance.audit_log").fetchone()
        assert audit.verify(conn).ok
    assert n == (63,)


def test_a_lone_record_is_committed_on_the_callers_thread(db: DatabaseAccess) -> None:
    """No hand-off to another thread when nobody else is writing (it cost as much as the
    commit): the connection is taken on the thread that called `write`."""
    import threading

    threads: list[str] = []

    def connect() -> AbstractContextManager[psycopg.Connection]:
        threads.append(threading.current_thread().name)
        return db.connect("backend")

    writer = AuditWriter(connect)
    try:
        writer.write(_event(1))
    finally:
        writer.close()
    assert threads == [threading.current_thread().name]
