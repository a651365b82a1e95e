"""The audit trail is append-only and tamper-evident: concurrent writers keep one chain,
and `verify` names every edited, deleted or reordered record."""

from __future__ import annotations

import threading

import pytest
from psycopg import errors

from backend.db.access import DatabaseAccess
from backend.governance import audit


def _event(n: int) -> audit.AuditEvent:
    return audit.AuditEvent(
        actor=f"user{n % 3}",
        role="researcher",
        purpose="study:x",
        study="x",
        action="cohort.stats",
        resource="cohort",
        outcome="allowed" if n % 4 else "denied",
        params={"n": n},
        row_count=n,
        status=200,
        latency_ms=1.5 * n,
        client="127.0.0.1",
    )


def _append_many(db: DatabaseAccess, n: int, threads: int = 4) -> None:
    def work(offset: int) -> None:
        with db.connect("backend") as conn:
            for i in range(offset, n, threads):
                audit.append(conn, _event(i))

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def _tamper(db: DatabaseAccess, sql: str) -> None:
    """What an attacker with the owner's credentials could do: switch the guard off."""
    with db.connect("owner") as conn:
        conn.execute("alter table governance.audit_log disable trigger audit_log_append_only")
        conn.execute(sql)
        conn.execute("alter table governance.audit_log enable trigger audit_log_append_only")


@pytest.fixture
def chain(scratch_db: DatabaseAccess) -> DatabaseAccess:
    from backend.db import migrate

    migrate.upgrade(scratch_db)
    _append_many(scratch_db, 200)
    return scratch_db


def test_concurrent_writers_keep_one_consistent_chain(chain: DatabaseAccess) -> None:
    with chain.connect("backend") as conn:
        result = audit.verify(conn)
        seqs = [r[0] for r in conn.execute("select seq from governance.audit_log order by seq")]
    assert result.ok, result.problems
    assert result.checked == 200
    assert seqs == list(range(1, 201))


def test_the_log_refuses_change_even_from_its_owner(chain: DatabaseAccess) -> None:
    for sql in (
        "update governance.audit_log set actor = 'x' where seq = 5",
        "delete from governance.audit_log where seq = 5",
        "truncate governance.audit_log",
    ):
        with chain.connect("owner") as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute(sql)
    with chain.connect("backend") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "insert into governance.audit_log (seq, at, request_id, actor, action,"
            " resource, outcome, prev_hash, hash) values (999, now(),"
            " gen_random_uuid(), 'x', 'x', 'x', 'allowed', '', '')"
        )


def _problems(db: DatabaseAccess) -> list[tuple[int, str]]:
    with db.connect("backend") as conn:
        return audit.verify(conn).problems


def test_an_edited_record_is_named(chain: DatabaseAccess) -> None:
    _tamper(chain, "update governance.audit_log set row_count = 0 where seq = 42")
    assert _problems(chain) == [(42, "content does not match its hash (edited)")]


def test_an_edited_hash_breaks_the_next_link(chain: DatabaseAccess) -> None:
    # Re-hashing the edited row to hide the edit breaks the link of the row after it.
    _tamper(
        chain,
        "update governance.audit_log set row_count = 0,"
        " hash = governance.audit_hash(prev_hash, seq, at, request_id, actor, role,"
        " purpose, study, action, resource, params, 0, outcome, status,"
        " latency_ms, client) where seq = 42",
    )
    problems = _problems(chain)
    assert problems and problems[0][0] == 43 and "does not link" in problems[0][1]


def test_a_deleted_record_is_named(chain: DatabaseAccess) -> None:
    _tamper(chain, "delete from governance.audit_log where seq = 77")
    assert _problems(chain)[0] == (78, "records 77..77 are missing (deleted)")


def test_reordered_records_are_named(chain: DatabaseAccess) -> None:
    # Swap the contents of two records (keeping their sequence numbers).
    _tamper(
        chain,
        """
        update governance.audit_log a set actor = b.actor, params = b.params,
               row_count = b.row_count, latency_ms = b.latency_ms
          from governance.audit_log b
         where (a.seq, b.seq) in ((10, 11), (11, 10))""",
    )
    problems = _problems(chain)
    assert {p[0] for p in problems} >= {10, 11}


def test_the_hash_does_not_depend_on_the_session_time_zone(chain: DatabaseAccess) -> None:
    with chain.connect("backend") as conn:
        conn.execute("set time zone 'Pacific/Chatham'")
        assert audit.verify(conn).ok


def test_whatever_a_client_sends_can_be_audited(scratch_db: DatabaseAccess) -> None:
    """Requests carry arbitrary text: NUL and lone surrogates (which jsonb refuses) and huge
    values are cleaned, so the audit write, and with it the request, never fails on them."""
    from backend.db import migrate

    migrate.upgrade(scratch_db)
    nasty = "a\x00b\udbedc" + "x" * 10_000
    event = audit.AuditEvent(
        actor="anonymous",
        action="cohort.stats",
        resource=f"studies/{nasty}/cohort-stats",
        outcome="denied",
        study=nasty,
        params={nasty: [nasty, float("nan"), {"k": nasty}]},
    )
    with scratch_db.connect("backend") as conn:
        seq = audit.append(conn, event)
        resource, params = conn.execute(
            "select resource, params::text from governance.audit_log where seq = %s", (seq,)
        ).fetchone() or ("", "")
        assert audit.verify(conn).ok
    assert "\x00" not in resource and len(resource) < 600
    assert resource.startswith("studies/ab?c")
    assert "NaN" not in params
