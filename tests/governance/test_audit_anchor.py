"""The database owner's attacks on the audit trail and on the watched tables, each tried
as the owner would: a rewritten or truncated tail, an edited record with every later hash
recomputed, a replaced or disabled trigger, deleted change-log entries, a forged anchor.
`audit.verify` alone reports each of the chain attacks intact (the hole); the anchored
verification names each."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.db.access import DatabaseAccess
from backend.governance import audit
from backend.governance.audit_anchor import AnchorFiles, AnchorSigner, Report, verify_all
from backend.governance.audit_writer import AuditWriter

RECORDS = 50


def _event(n: int) -> audit.AuditEvent:
    return audit.AuditEvent(
        actor=f"user{n % 3}",
        role="coach",
        action="timeline.read",
        resource="timeline",
        outcome="allowed",
        params={"n": n},
        status=200,
    )


@pytest.fixture
def anchored(
    scratch_db: DatabaseAccess, tmp_path: Path
) -> Iterator[tuple[DatabaseAccess, AnchorFiles]]:
    """A chain of 50 records written by the backend's writer, anchored every 10."""
    from backend.db import migrate

    migrate.upgrade(scratch_db)
    files = AnchorFiles.in_home(tmp_path)
    writer = AuditWriter(
        lambda: scratch_db.connect("backend"),
        AnchorSigner(files, scratch_db.dbname),
        anchor_every=10,
        anchor_seconds=3600,
    )
    for n in range(RECORDS):
        seq = writer.write(_event(n))
        if seq % 10 == 0:
            # Anchors are made off the requests' path: wait for this one, so that the
            # anchors fall on every tenth record.
            _wait_anchor(files, scratch_db.dbname, seq)
    writer.close()
    yield scratch_db, files


def _wait_anchor(files: AnchorFiles, dbname: str, seq: int) -> None:
    import time

    from backend.governance.audit_anchor import read_log

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = read_log(files, dbname)
        if log and any(a.seq == seq for a in log.anchors):
            return
        time.sleep(0.01)
    raise AssertionError(f"no anchor at record {seq}")


def _verify(db: DatabaseAccess, files: AnchorFiles) -> Report:
    with db.connect("backend") as conn:
        return verify_all(conn, files, db.dbname)


def _chain_alone_ok(db: DatabaseAccess) -> bool:
    with db.connect("backend") as conn:
        return audit.verify(conn).ok


def _as_owner(db: DatabaseAccess, *sql: str) -> None:
    with db.connect("owner") as conn:
        for statement in sql:
            conn.execute(statement)
        conn.commit()


_OFF = "alter table governance.audit_log disable trigger audit_log_append_only"
_ON = "alter table governance.audit_log enable trigger audit_log_append_only"

# What an owner does to hide an edit: rewrite every later link and hash with the
# database's own hash function, so the chain agrees with itself again.
_RECOMPUTE_FROM_15 = """
do $$
declare r record; prev bytea;
begin
  select hash into prev from governance.audit_log where seq = 14;
  for r in select * from governance.audit_log where seq >= 15 order by seq loop
    update governance.audit_log
       set prev_hash = prev,
           hash = governance.audit_hash(prev, r.seq, r.at, r.request_id, r.actor, r.role,
                    r.purpose, r.study, r.action, r.resource, r.params, r.row_count,
                    r.outcome, r.status, r.latency_ms, r.client)
     where seq = r.seq
     returning hash into prev;
  end loop;
end $$
"""


def test_an_untouched_chain_verifies_against_its_anchors(
    anchored: tuple[DatabaseAccess, AnchorFiles],
) -> None:
    db, files = anchored
    report = _verify(db, files)
    assert report.ok, report.findings
    assert report.checked == RECORDS
    assert report.anchors == RECORDS // 10
    assert report.latest is not None and report.latest.seq == RECORDS
    # The key is not in the database and the log is private to the stack.
    assert oct(files.key.stat().st_mode & 0o777) == "0o600"
    assert oct(files.log_of(db.dbname).stat().st_mode & 0o777) == "0o600"


def test_a_truncated_tail_is_named(anchored: tuple[DatabaseAccess, AnchorFiles]) -> None:
    db, files = anchored
    _as_owner(db, _OFF, "delete from governance.audit_log where seq > 40", _ON)
    assert _chain_alone_ok(db), "the chain alone cannot see a cut tail (the reported hole)"
    report = _verify(db, files)
    assert [f.kind for f in report.findings] == ["truncated"], report.findings
    assert "ends at record 40" in report.findings[0].text


def test_a_tail_rewritten_after_truncation_is_named(
    anchored: tuple[DatabaseAccess, AnchorFiles],
) -> None:
    db, files = anchored
    _as_owner(db, _OFF, "delete from governance.audit_log where seq > 35", _ON)
    with db.connect("backend") as conn:  # new records take the deleted numbers
        for n in range(15):
            audit.append(conn, _event(1000 + n))
    assert _chain_alone_ok(db)
    kinds = [f.kind for f in _verify(db, files).findings]
    assert kinds == ["rewritten"], kinds


def test_an_edited_record_with_recomputed_hashes_is_named(
    anchored: tuple[DatabaseAccess, AnchorFiles],
) -> None:
    db, files = anchored
    _as_owner(
        db,
        _OFF,
        "update governance.audit_log set actor = 'someone-else' where seq = 15",
        _RECOMPUTE_FROM_15,
        _ON,
    )
    assert _chain_alone_ok(db), "the recomputed chain agrees with itself (the reported hole)"
    findings = _verify(db, files).findings
    assert [f.kind for f in findings] == ["rewritten"], findings
    assert findings[0].seq == 20 and "records 11..20" in findings[0].text


def test_a_replaced_hash_function_does_not_fool_verify(
    anchored: tuple[DatabaseAccess, AnchorFiles],
) -> None:
    db, files = anchored
    # The owner makes the database's hash function agree with whatever is stored...
    _as_owner(
        db,
        """create or replace function governance.audit_hash(
             prev bytea, seq bigint, at timestamptz, request_id uuid, actor text, role text,
             purpose text, study text, action text, resource text, params jsonb,
             row_count integer, outcome text, status integer, latency_ms double precision,
             client text) returns bytea language sql as
           $$ select hash from governance.audit_log a where a.seq = $2 $$""",
        _OFF,
        "update governance.audit_log set actor = 'someone-else' where seq = 45",
        _ON,
    )
    findings = _verify(db, files).findings
    kinds = {f.kind for f in findings}
    assert "edited" in kinds and "protection" in kinds, findings
    assert any(f.seq == 45 for f in findings)


def test_a_no_op_trigger_function_is_named(anchored: tuple[DatabaseAccess, AnchorFiles]) -> None:
    db, files = anchored
    _as_owner(
        db,
        "create or replace function governance.refuse_change() returns trigger"
        " language plpgsql as $$ begin return old; end $$",
    )
    findings = _verify(db, files).findings
    assert [f.kind for f in findings] == ["protection"], findings
    assert "governance.refuse_change() was replaced" in findings[0].text


def test_a_disabled_trigger_is_named(anchored: tuple[DatabaseAccess, AnchorFiles]) -> None:
    db, files = anchored
    _as_owner(db, _OFF)
    findings = _verify(db, files).findings
    assert [f.text for f in findings] == [
        "trigger audit_log_append_only on governance.audit_log is disabled"
    ]


def test_a_forged_or_removed_anchor_line_is_named(
    anchored: tuple[DatabaseAccess, AnchorFiles],
) -> None:
    db, files = anchored
    log = files.log_of(db.dbname)
    lines = log.read_text().splitlines()
    forged = json.loads(lines[-1])
    forged["anchor"]["seq"] = 30  # moving the vouched head back, without the key
    log.write_text("\n".join([*lines[:2], *lines[3:-1], json.dumps(forged)]) + "\n")
    texts = [f.text for f in _verify(db, files).findings]
    assert any("line 3 does not follow line 2" in t for t in texts), texts
    assert any(f"line {len(lines) - 1} is not a validly signed anchor" in t for t in texts), texts


def _observation(db: DatabaseAccess) -> uuid.UUID:
    member = uuid.uuid4()
    _as_owner(
        db,
        "insert into processed.observations (member_id, observed_at, code, value, unit, source,"
        " raw_record_id, raw_received_at)"
        f" values ('{member}', now(), '8867-4', 61, '/min', 'watch', gen_random_uuid(), now())",
        f"insert into governance.coach_assignments (coach, member_id) values ('c1', '{member}')",
    )
    return member


def test_owner_edits_of_observations_and_assignments_leave_a_trace(
    anchored: tuple[DatabaseAccess, AnchorFiles],
) -> None:
    db, _ = anchored
    member = _observation(db)
    _as_owner(
        db,
        f"update processed.observations set value = 180 where member_id = '{member}'",
        f"update governance.coach_assignments set coach = 'c2' where member_id = '{member}'",
        f"delete from processed.observations where member_id = '{member}'",
    )
    with db.connect("owner") as conn:
        rows = conn.execute(
            "select table_name, op, db_user, row_key->>'member_id', changed"
            " from governance.change_log order by id"
        ).fetchall()
    owner = db.roles.owner
    assert rows == [
        ("processed.observations", "UPDATE", owner, str(member), ["value"]),
        ("governance.coach_assignments", "UPDATE", owner, str(member), ["coach"]),
        ("processed.observations", "DELETE", owner, str(member), None),
    ]
    # The trace holds keys and column names, never the values.
    with db.connect("owner") as conn:
        text = conn.execute("select string_agg(row_key::text, ' ') from governance.change_log")
        assert "180" not in str(text.fetchone())
    # ... and it cannot itself be edited.
    with db.connect("owner") as conn, pytest.raises(Exception, match="append-only"):
        conn.execute("delete from governance.change_log")


def test_deleting_signed_change_log_entries_is_named(
    scratch_db: DatabaseAccess, tmp_path: Path
) -> None:
    from backend.db import migrate

    migrate.upgrade(scratch_db)
    member = _observation(scratch_db)
    _as_owner(
        scratch_db, f"update processed.observations set value = 1 where member_id = '{member}'"
    )
    files = AnchorFiles.in_home(tmp_path)
    writer = AuditWriter(
        lambda: scratch_db.connect("backend"), AnchorSigner(files, scratch_db.dbname)
    )
    writer.write(_event(1))
    writer.close()  # anchors on close
    assert _verify(scratch_db, files).ok
    _as_owner(
        scratch_db,
        "alter table governance.change_log disable trigger change_log_append_only",
        "delete from governance.change_log",
        "alter table governance.change_log enable trigger change_log_append_only",
    )
    findings = _verify(scratch_db, files).findings
    assert [f.kind for f in findings] == ["change-log"], findings


def test_dropping_the_trace_on_observations_is_named(
    anchored: tuple[DatabaseAccess, AnchorFiles],
) -> None:
    db, files = anchored
    # TimescaleDB refuses to disable a hypertable's trigger; its owner can drop it.
    _as_owner(db, "drop trigger observations_changes on processed.observations")
    texts = [f.text for f in _verify(db, files).findings]
    assert texts == ["trigger observations_changes on processed.observations is missing (dropped)"]


def test_disabling_the_trace_on_assignments_is_named(
    anchored: tuple[DatabaseAccess, AnchorFiles],
) -> None:
    db, files = anchored
    _as_owner(db, "alter table governance.coach_assignments disable trigger all")
    texts = [f.text for f in _verify(db, files).findings]
    assert texts == [
        "trigger coach_assignments_changes on governance.coach_assignments is disabled",
        "trigger coach_assignments_truncate on governance.coach_assignments is disabled",
    ]


def test_records_left_idle_are_anchored_on_time(scratch_db: DatabaseAccess, tmp_path: Path) -> None:
    """Fewer records than `anchor_every`, then silence: the timer anchors them."""
    import time

    from backend.db import migrate
    from backend.governance.audit_anchor import read_log

    migrate.upgrade(scratch_db)
    files = AnchorFiles.in_home(tmp_path)
    writer = AuditWriter(
        lambda: scratch_db.connect("backend"),
        AnchorSigner(files, scratch_db.dbname),
        anchor_every=1000,
        anchor_seconds=0.5,
    )
    try:
        last = 0
        for n in range(3):
            last = writer.write(_event(n))
        deadline = time.monotonic() + 10
        anchors: list[int] = []
        while time.monotonic() < deadline and last not in anchors:
            time.sleep(0.1)
            log = read_log(files, scratch_db.dbname)
            anchors = [a.seq for a in log.anchors] if log else []
        assert last in anchors, "the idle records were not anchored"
    finally:
        writer.close()
