"""kill -9 each service of the running stack (and one refiner worker) while batches are
being ingested: supervisord starts it again by itself, `rejuve status` counts the restart,
and every batch the API acknowledged is refined and adds up in `reconcile`."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from backend.refine.reconcile import reconcile
from backend.settings import REPO_ROOT
from backend.stack import supervisor
from backend.stack.context import StackContext
from tests.devices import enrolled_member, source_client

REJUVE = str(Path(sys.executable).parent / "rejuve")
SAMPLES = 20


def _status(ctx: StackContext) -> dict[str, dict[str, object]]:
    """What an operator sees: `rejuve status --json`."""
    res = subprocess.run(
        [REJUVE, "status", "--json"], capture_output=True, text=True, check=True, timeout=60
    )
    return {s["name"]: s for s in json.loads(res.stdout)}


def _batch(member: uuid.UUID, n: int) -> dict[str, object]:
    """The `n`th batch: its samples' times are its own, so none is a duplicate."""
    first = dt.datetime(2026, 11, 20, tzinfo=dt.UTC) + dt.timedelta(seconds=n * SAMPLES)
    return {
        "batch_id": f"supervision-{uuid.uuid4()}",
        "member_id": str(member),
        "device": "test-watch",
        "samples": [
            {
                "code": "8867-4",
                "value": 60 + i,
                "unit": "/min",
                "start": (first + dt.timedelta(seconds=i)).isoformat(),
            }
            for i in range(SAMPLES)
        ],
    }


class Ingester:
    """Sends batches one after the other for as long as it runs; a batch that is not
    acknowledged (connection refused, 5xx while a service is down) is sent again, as a
    device would. `acked` are the batch ids the API acknowledged."""

    def __init__(self, client: httpx.Client, member: uuid.UUID) -> None:
        self.client = client
        self.member = member
        self.acked: list[str] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sent = 0
        payload = _batch(self.member, sent)
        while not self._stop.is_set():
            try:
                r = self.client.post("/v1/ingest/batches", json=payload)
            except httpx.HTTPError:
                r = None
            # 200 `replayed`: an earlier try was stored but its answer was lost.
            if r is not None and r.status_code in (200, 201):
                self.acked.append(r.json()["batch_id"])
                sent += 1
                payload = _batch(self.member, sent)
            else:
                self.failures += 1
                assert r is None or r.status_code >= 500, r.text
                time.sleep(0.2)

    def __enter__(self) -> Ingester:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture
def device(ctx: StackContext) -> Iterator[tuple[httpx.Client, uuid.UUID]]:
    """A source's client (the only user of it is the Ingester's thread) and the member it
    is enrolled to write for."""
    with source_client(ctx, "test-supervision") as (client, source):
        yield client, enrolled_member(ctx, source)


def _wait_back(ctx: StackContext, name: str, old_pid: int, restarts: int) -> dict[str, object]:
    """Back by itself: a new process, the restart counted. It may still be `degraded` (its
    health probe slow while it warms up on a loaded machine); the test waits for every
    service to be `up` at the end."""
    deadline = time.monotonic() + 300
    row: dict[str, object] = {}
    while time.monotonic() < deadline:
        row = _status(ctx)[name]
        counted = isinstance(row["restarts"], int) and row["restarts"] > restarts
        if row["state"] != "down" and row["pid"] not in (None, old_pid) and counted:
            return row
        time.sleep(1)
    raise AssertionError(f"{name} did not come back by itself: {row}")


def _wait_worker_replaced(refiner: int, before: set[int]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = {p.pid for p in psutil.Process(refiner).children()}
        if len(now) >= len(before) and now - before:
            return
        time.sleep(0.5)
    raise AssertionError("the refiner did not replace its killed worker")


def _wait_all_up(ctx: StackContext) -> dict[str, dict[str, object]]:
    deadline = time.monotonic() + 600
    rows = _status(ctx)
    while time.monotonic() < deadline:
        if all(row["state"] == "up" for row in rows.values()):
            break
        time.sleep(2)
        rows = _status(ctx)
    return rows


def _wait_acked(ingester: Ingester, more_than: int) -> None:
    deadline = time.monotonic() + 120
    while len(ingester.acked) <= more_than and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(ingester.acked) > more_than, "ingestion did not resume"


# Least disruptive first; the database last (everything else reconnects to it).
VICTIMS = [
    "refiner-worker",
    "refiner",
    "rollups",
    "backend",
    "coach",
    "redis",
    "flows",
    "prefect",
    "jupyterhub",
]


@pytest.mark.timeout(1500)  # nine restarts, each waited for, on a loaded 2-core machine
def test_kill_9_each_service_under_load(
    ctx: StackContext, device: tuple[httpx.Client, uuid.UUID]
) -> None:
    before = _wait_all_up(ctx)
    assert all(row["state"] == "up" for row in before.values()), before
    with Ingester(*device) as ingester:
        _wait_acked(ingester, 3)
        for victim in [*VICTIMS, "timescaledb"]:
            name = victim.removesuffix("-worker")
            row = _status(ctx)[name]
            pid = int(str(row["pid"]))
            restarts = int(str(row["restarts"]))
            if victim == "refiner-worker":
                # One worker dies: the refiner replaces it itself (its batch counts as a
                # failed attempt); supervisord has nothing to do.
                workers = {p.pid for p in psutil.Process(pid).children()}
                os.kill(min(workers), signal.SIGKILL)
                _wait_worker_replaced(pid, workers)
                _wait_acked(ingester, len(ingester.acked))
                continue
            os.kill(pid, signal.SIGKILL)
            back = _wait_back(ctx, name, pid, restarts)
            assert back["started"], back
            # Ingestion goes on after each restart.
            _wait_acked(ingester, len(ingester.acked))
        _wait_acked(ingester, len(ingester.acked) + 2)

    after = _wait_all_up(ctx)
    assert all(row["state"] == "up" for row in after.values()), after
    for name in [*(v for v in VICTIMS if v != "refiner-worker"), "timescaledb"]:
        assert int(str(after[name]["restarts"])) > int(str(before[name]["restarts"])), name

    # Nothing acknowledged is lost: each batch is refined and adds up.
    acked = [uuid.UUID(b) for b in ingester.acked]
    deadline = time.monotonic() + 180
    with ctx.db.connect("refiner", autocommit=True) as conn:
        while time.monotonic() < deadline:
            ledger = conn.execute(
                "select count(*) from processed.batch_ledger where batch_id = any(%s)", (acked,)
            ).fetchone()
            if ledger and ledger[0] == len(acked):
                break
            time.sleep(0.5)
        lines = [reconcile(conn, batch=b).batches for b in acked]
    assert all(len(found) == 1 for found in lines), "an acknowledged batch is missing"
    assert [(ln[0].parsed, ln[0].processed, ln[0].ok) for ln in lines] == [
        (SAMPLES, SAMPLES, True)
    ] * len(acked)


def test_status_counts_nothing_for_a_stop_that_was_asked_for(
    ctx: StackContext, stack: StackContext
) -> None:
    """`rejuve down X` is not a crash: supervisord does not restart it, nor count it."""
    restarts = int(str(_status(ctx)["flows"]["restarts"]))
    supervisor.down(stack, ["flows"])
    try:
        time.sleep(2)
        row = _status(ctx)["flows"]
        assert row["state"] == "down" and row["pid"] is None
    finally:
        supervisor.up(stack, ["flows"])
    row = _status(ctx)["flows"]
    assert row["state"] == "up" and row["restarts"] == restarts


def _up() -> str:
    res = subprocess.run([REJUVE, "up"], capture_output=True, text=True, check=False, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


OUR_CODE = ("refiner", "rollups", "backend", "coach", "jupyterhub", "flows")


@pytest.mark.timeout(1500)  # three `rejuve up`s, two of which restart five services
def test_up_restarts_the_services_whose_code_changed(ctx: StackContext) -> None:
    """An edit under backend/ followed by `rejuve up` (as `make test` does): the services
    running our code are restarted, the servers that do not run it are left alone."""
    before = _status(ctx)
    probe = REPO_ROOT / "backend" / f"_probe_{secrets.token_hex(4)}.py"
    probe.write_text('"""An edit to the backend, made by tests/test_supervision.py."""\n')
    try:
        out = _up()
        after = _status(ctx)
    finally:
        probe.unlink()
    for name in OUR_CODE:
        assert after[name]["pid"] != before[name]["pid"], name
        assert after[name]["state"] == "up", after[name]
        # A restart we made is not a crash.
        assert after[name]["restarts"] == before[name]["restarts"], name
    assert "restarted: code or settings changed" in out
    for name in ("timescaledb", "redis", "prefect"):
        assert after[name]["pid"] == before[name]["pid"], name

    # Back to the checkout's code: restarted once more; then an `up` with nothing changed
    # restarts nothing.
    _up()
    again = _status(ctx)
    assert all(again[n]["pid"] != after[n]["pid"] for n in OUR_CODE)
    _up()
    assert {n: r["pid"] for n, r in _status(ctx).items()} == {n: r["pid"] for n, r in again.items()}
