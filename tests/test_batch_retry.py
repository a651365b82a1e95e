"""`rejuve batches retry`: a dead-lettered batch goes back in the refiner's queue with its
attempts counted afresh; the refiner refines it if its cause is gone, or dead-letters it
again. Against the running stack, through the CLI as an operator runs it."""

from __future__ import annotations

import getpass
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.ingest.landing import land_bytes
from backend.refine.quality import latest
from backend.refine.reconcile import reconcile
from backend.runtime import Runtime
from backend.stack import supervisor
from backend.stack.context import StackContext
from tests.devices import enrolled_member
from tests.test_ingest_guards import _export_zip, _poison, land_export, ledger, refiner_with

REJUVE = [sys.executable, "-m", "backend.cli.main"]
FIXTURES = Path(__file__).parent / "fixtures"
OPERATOR = f"operator:{getpass.getuser()}"


def rejuve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*REJUVE, *args], capture_output=True, text=True, timeout=300, check=False, env=env
    )


def _ledger(ctx: Runtime, batch: uuid.UUID, timeout: float) -> tuple[str, int, int, str | None]:
    """(status, attempts, parsed, error) once the batch has a ledger row."""
    ledger(ctx, str(batch), timeout)
    with ctx.db.connect("refiner") as conn:
        line = reconcile(conn, batch=batch).batches[0]
    return str(line.status), line.attempts, line.parsed, line.error


def _retry_audits(ctx: Runtime, batch: uuid.UUID) -> list[tuple[str, str, str]]:
    with ctx.db.connect("backend") as conn:
        rows = conn.execute(
            "select actor, action, outcome from governance.audit_log"
            " where client = 'cli' and action = 'batches.retry' and params->'batches' ? %s"
            " order by seq",
            (str(batch),),
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def test_a_poison_batch_put_back_is_dead_lettered_again_after_as_many_new_tries(
    ctx: Runtime,
) -> None:
    tries = ctx.settings.refine_max_attempts
    [batch] = _poison(ctx, enrolled_member(ctx), 1)
    status, attempts, _, error = _ledger(ctx, batch, timeout=120)
    assert (status, attempts) == ("dead_letter", tries) and "MappingError" in str(error)
    # As `reconcile` shows it: the first 8 characters of its id name it there too.
    shown = rejuve("reconcile", "--batch", str(batch)[:8])
    assert shown.returncode == 1 and "failed" in shown.stdout, shown.stderr

    put_back = rejuve("batches", "retry", str(batch)[:13])  # a prefix, as tables show ids
    assert put_back.returncode == 0, put_back.stderr
    assert str(batch) in put_back.stdout and "put back" in put_back.stdout
    # The same cause, so dead-lettered again: after `tries` new attempts, not after one
    # (attempts carried over would make it 4 >= 3 at the first failure).
    status, attempts, _, error = _ledger(ctx, batch, timeout=120)
    assert (status, attempts) == ("dead_letter", tries), error
    with ctx.db.connect("refiner") as conn:
        line = reconcile(conn, batch=batch).batches[0]
    assert not line.ok and line.status == "dead_letter"

    every = rejuve("batches", "retry", "--all-dead")
    assert every.returncode == 0, every.stderr
    assert str(batch) in every.stdout
    assert _ledger(ctx, batch, timeout=300)[:2] == ("dead_letter", tries)

    # Both retries name the batch, unless --all-dead put back more than the 50 ids an audit
    # record keeps of a list (a stack with older dead letters); the record counts them all.
    listed = sum(" attempt(s): " in line for line in every.stdout.splitlines())
    named = 2 if listed <= 50 else 1
    assert _retry_audits(ctx, batch) == [(OPERATOR, "batches.retry", "allowed")] * named
    with ctx.db.connect("backend") as conn:
        (counted,) = conn.execute(
            "select (params->>'put_back')::int from governance.audit_log"
            " where client = 'cli' and action = 'batches.retry'"
            " and params->>'all_dead' = 'true' order by seq desc limit 1"
        ).fetchone() or (None,)
    assert counted == listed >= 1


def _land(ctx: Runtime, member: uuid.UUID, fmt: str, body: bytes) -> uuid.UUID:
    with ctx.db.connect("ingest") as conn:
        return land_bytes(
            conn,
            ctx.keystore(),
            body=body,
            source="retry-test",
            fmt=fmt,
            member_id=member,
            region="local",
        ).batch_id


def test_only_dead_letters_are_put_back(ctx: Runtime) -> None:
    member = enrolled_member(ctx)
    good = _land(ctx, member, "omh", (FIXTURES / "omh/single-point.json").read_bytes())
    unreadable = _land(ctx, member, "omh", b"{not json")
    assert _ledger(ctx, good, timeout=60)[0] == "refined"
    assert _ledger(ctx, unreadable, timeout=60)[0] == "unreadable"
    for batch, why in ((good, "it was refined"), (unreadable, "cannot be read")):
        refused = rejuve("batches", "retry", str(batch))
        assert refused.returncode == 2
        assert refused.stderr.startswith(f"error: batch {batch} is not dead-lettered")
        assert why in refused.stderr
        assert _retry_audits(ctx, batch) == [(OPERATOR, "batches.retry", "denied")]
    with ctx.db.connect("refiner") as conn:  # and nothing changed
        assert [b.status for b in reconcile(conn, batch=good).batches] == ["refined"]
    assert rejuve("batches", "retry").returncode == 2  # nothing named
    unknown = rejuve("batches", "retry", "ffffffff-ffff")
    assert unknown.returncode == 2 and "no batch with an id starting" in unknown.stderr


@pytest.fixture
def refiner_stopped(stack: StackContext) -> Iterator[StackContext]:
    supervisor.down(stack, ["refiner"])
    try:
        yield stack
    finally:
        supervisor.up(stack, ["refiner"])


def test_a_batch_over_the_time_limit_is_refined_once_the_limit_is_raised(
    ctx: Runtime, refiner_stopped: StackContext
) -> None:
    """The realistic way a good batch becomes a dead letter: it took longer than
    REJUVE_REFINE_TIME_LIMIT_SECONDS. The operator raises the limit (here: the stack's
    refiner with its default limit again) and puts it back; it is refined, and its
    quality row is the new one."""
    records = 100_000
    batch = land_export(ctx, enrolled_member(ctx), _export_zip(records))
    with refiner_with(time_limit="0.5", seconds_per_mib="0"):
        status, _, _, error = _ledger(ctx, batch, timeout=60)
    assert status == "dead_letter" and "time limit of 0.5 s exceeded" in str(error)

    supervisor.up(refiner_stopped, ["refiner"])  # the default limit, 300 s
    put_back = rejuve("batches", "retry", str(batch))
    assert put_back.returncode == 0, put_back.stderr
    status, attempts, parsed, error = _ledger(ctx, batch, timeout=300)
    assert (status, attempts, parsed, error) == ("refined", 1, records, None)
    with ctx.db.connect("refiner") as conn:
        line = reconcile(conn, batch=batch).batches[0]
        quality = {q.batch_id: q for q in latest(conn, limit=200)}
    assert line.ok, line.problems
    assert quality[batch].error is None and quality[batch].completeness == 1.0
