"""kill -9 the refiner in the middle of its work: after a restart every batch is refined
exactly once: no loss, no double count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest

from backend.ingest.landing import land_bytes
from backend.refine.files import enrol_members
from backend.refine.reconcile import reconcile
from backend.stack import supervisor
from backend.stack.context import StackContext

BATCHES = 24
SAMPLES = 10_000


@pytest.fixture
def refiner_stopped(stack: StackContext) -> Iterator[None]:
    supervisor.down(stack, ["refiner"])
    try:
        yield
    finally:
        supervisor.up(stack, ["refiner"])


def _body(member: uuid.UUID, n: int) -> bytes:
    samples = [
        {
            "code": "8867-4",
            "value": 50 + (i % 120),
            "unit": "/min",
            "start": f"2026-10-{1 + i // 1440:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00Z",
        }
        for i in range(SAMPLES)
    ]
    return json.dumps(
        {"batch_id": f"fault-{n}", "member_id": str(member), "device": "w", "samples": samples}
    ).encode()


def _ledger_count(ctx: StackContext, batch_ids: list[uuid.UUID]) -> int:
    with ctx.db.connect("refiner") as conn:
        row = conn.execute(
            "select count(*) from processed.batch_ledger where batch_id = any(%s)", (batch_ids,)
        ).fetchone()
    return int(row[0]) if row else 0


def test_kill_9_mid_batch_then_restart_is_exactly_once(
    ctx: StackContext, stack: StackContext, refiner_stopped: None
) -> None:
    keys = ctx.keystore()
    members = [uuid.uuid4() for _ in range(BATCHES)]
    enrol_members(ctx.db, members, "local")
    with ctx.db.connect("ingest") as conn:
        batch_ids = [
            land_bytes(
                conn,
                keys,
                body=_body(m, n),
                source="fault-test",
                fmt="device-batch",
                member_id=m,
                region="local",
            ).batch_id
            for n, m in enumerate(members)
        ]

    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli.main", "refiner-run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while _ledger_count(ctx, batch_ids) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.15)  # into the next batch
    finally:
        workers = psutil.Process(proc.pid).children()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # Its worker processes die with it (they are not left refining on their own).
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert len(workers) == 2 and alive == []
    done_at_kill = _ledger_count(ctx, batch_ids)
    assert 2 <= done_at_kill < BATCHES, "the kill must land in the middle of the work"

    # What the killed refiner left: every batch is either complete or untouched.
    with ctx.db.connect("refiner") as conn:
        rows = dict(
            conn.execute(
                "select member_id, count(*) from processed.observations"
                " where member_id = any(%s) group by member_id",
                (members,),
            ).fetchall()
        )
    assert sorted(set(rows.values())) in ([SAMPLES], [])
    assert len(rows) == done_at_kill

    supervisor.up(stack, ["refiner"])
    deadline = time.monotonic() + 180
    while _ledger_count(ctx, batch_ids) < BATCHES and time.monotonic() < deadline:
        time.sleep(0.2)
    with ctx.db.connect("refiner") as conn:
        per_member = dict(
            conn.execute(
                "select member_id, count(*) from processed.observations"
                " where member_id = any(%s) group by member_id",
                (members,),
            ).fetchall()
        )
        lines = [reconcile(conn, batch=b).batches[0] for b in batch_ids]
    assert per_member == dict.fromkeys(members, SAMPLES)
    assert all(line.ok for line in lines)
    assert [(ln.parsed, ln.processed, ln.duplicate) for ln in lines] == [
        (SAMPLES, SAMPLES, 0)
    ] * BATCHES
