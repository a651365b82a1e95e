"""The refiner's loop: woken by NOTIFY when a batch lands, polling as a safety net.

A long-running process rather than a Prefect deployment: a device batch must be in the
processed zone within seconds of its acknowledgement, and a flow run per batch would add
more scheduling latency and database writes than refining the batch itself. Files and
exports go through Prefect flows; both paths call the same `refine_batch`."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from backend.db.access import DatabaseAccess
from backend.ingest.landing import NOTIFY_CHANNEL
from backend.keys.keystore import KeyStore
from backend.logs import get as get_logger
from backend.refine.refiner import MAX_ATTEMPTS, fail_batch, pending, refine_batch
from backend.refine.units import conversion_for

log = get_logger(__name__)


def drain(
    conn: psycopg.Connection,
    keys: KeyStore,
    max_attempts: int = MAX_ATTEMPTS,
    on_batch: Callable[[uuid.UUID | None], None] = lambda _: None,
) -> int:
    """Refine every pending batch; returns how many were refined. A batch that fails is
    counted and paused by `refine_batch` (see `fail_batch`): it does not come back in this
    round, so it cannot hold up the others."""
    done = 0
    seen: set[uuid.UUID] = set()  # tried in this round (refined, failed, or taken by another)
    while batch_ids := [b for b in pending(conn, limit=1000) if b not in seen]:
        for batch_id in batch_ids:
            seen.add(batch_id)
            on_batch(batch_id)
            try:
                if refine_batch(conn, keys, batch_id, max_attempts=max_attempts) is not None:
                    done += 1
            finally:
                on_batch(None)
    return done


def run(
    access: DatabaseAccess,
    keys: KeyStore,
    stop: threading.Event,
    heartbeat: Path | None = None,
    poll_seconds: float = 2.0,
    on_idle: Callable[[], None] = lambda: None,
    max_attempts: int = MAX_ATTEMPTS,
    on_batch: Callable[[uuid.UUID | None], None] = lambda _: None,
) -> None:
    with (
        access.connect("refiner", autocommit=True) as listener,
        access.connect("refiner") as worker,
    ):
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        log.info("refiner listening", channel=NOTIFY_CHANNEL)
        while not stop.is_set():
            drain(worker, keys, max_attempts, on_batch)
            if heartbeat is not None:
                heartbeat.touch()
            on_idle()
            # Returns on the first notification, or after poll_seconds without one.
            for _ in listener.notifies(timeout=poll_seconds, stop_after=1):
                pass
            time.sleep(0)  # let a stop signal through between rounds


@dataclass
class _Slot:
    """One worker process and what it is refining, shared with it through memory: the
    batch id and the monotonic time it started (0: idle). Only the worker writes them."""

    batch: Any  # multiprocessing Array of 16 bytes
    started: Any  # multiprocessing Value, double
    proc: Any = None  # multiprocessing Process

    def current(self) -> tuple[uuid.UUID, float] | None:
        started = float(self.started.value)
        if started == 0:
            return None
        return uuid.UUID(bytes=bytes(self.batch[:])), started


MIB = 1024 * 1024


def batch_time_limit(base: float, seconds_per_mib: float, byte_count: int) -> float:
    """How long one batch may take: `base`, plus an allowance for its size (refining time
    grows with the records, and the records with the bytes that landed)."""
    return base + seconds_per_mib * byte_count / MIB


def _landed_bytes(access: DatabaseAccess, batch_id: uuid.UUID) -> int | None:
    """The batch's size as landed; None when the database does not answer (the caller asks
    again on its next round rather than stopping a batch whose limit it cannot know, or
    letting the error end the loop that supervises every worker)."""
    try:
        with access.connect("refiner") as conn:
            row = conn.execute(
                "select byte_count from raw.batches where batch_id = %s", (batch_id,)
            ).fetchone()
    except psycopg.Error as e:
        log.warning("could not read a batch's size", batch_id=str(batch_id), error=type(e).__name__)
        return None
    return int(row[0]) if row else 0


def run_workers(
    access: DatabaseAccess,
    keystore: Callable[[], KeyStore],
    stop: threading.Event,
    workers: int,
    heartbeat: Path | None = None,
    time_limit: float = 300.0,
    max_attempts: int = MAX_ATTEMPTS,
    seconds_per_mib: float = 0.0,
) -> None:
    """Run `workers` refiner processes (at least one: a batch is refined in a worker so
    that it can be stopped). Batches are shared out by the advisory lock in
    `refine_batch`. The parent keeps the heartbeat and enforces the time limit: a worker
    that has spent its batch's limit (`batch_time_limit`: `time_limit` plus
    `seconds_per_mib` per MiB landed) on one batch is killed (its transaction is rolled
    back), the batch dead-lettered with the reason, and a new worker started. Expat, for
    one, cannot be interrupted inside a parse, so a process boundary is the only sure
    stop. A worker that dies on its own is replaced too, and its batch counted as a
    failed attempt."""
    import multiprocessing as mp
    import signal

    ctx = mp.get_context("fork")  # no connection exists in this process when it forks
    parent = os.getpid()
    slots = [
        _Slot(ctx.Array("B", 16, lock=False), ctx.Value("d", 0.0, lock=False))
        for _ in range(max(1, workers))
    ]

    def start(n: int) -> None:
        slot = slots[n]
        slot.started.value = 0.0
        slot.proc = ctx.Process(
            target=_worker,
            args=(access, keystore, parent, slot, max_attempts),
            daemon=True,
            name=f"refiner-{n}",
        )
        slot.proc.start()

    def fail(batch_id: uuid.UUID, reason: str, final: bool) -> None:
        try:
            with access.connect("refiner") as conn:
                fail_batch(conn, batch_id, reason, max_attempts, final=final)
        except psycopg.Error as e:
            log.error(
                "could not record a failed batch", batch_id=str(batch_id), error=type(e).__name__
            )

    for n in range(len(slots)):
        start(n)
    restarts: list[float] = []
    # Each running batch's own limit, looked up once it has run past the base limit (most
    # batches finish well before: no query for them).
    limits: dict[uuid.UUID, tuple[float, int]] = {}

    def over_limit(batch_id: uuid.UUID, running: float) -> tuple[float, int] | None:
        if running <= time_limit:
            return None
        if batch_id not in limits:
            size = _landed_bytes(access, batch_id) if seconds_per_mib > 0 else 0
            if size is None:
                return None
            limits[batch_id] = (batch_time_limit(time_limit, seconds_per_mib, size), size)
        limit = limits[batch_id]
        return limit if running > limit[0] else None

    try:
        while not stop.is_set():
            now = time.monotonic()
            running = {b[0] for slot in slots if (b := slot.current()) is not None}
            for done in limits.keys() - running:
                del limits[done]
            for n, slot in enumerate(slots):
                busy = slot.current()
                over = over_limit(busy[0], now - busy[1]) if busy is not None else None
                if busy is not None and over is not None and slot.proc.is_alive():
                    os.kill(slot.proc.pid, signal.SIGKILL)
                    slot.proc.join(timeout=10)
                    limit, size = over
                    log.error(
                        "refiner worker stopped: time limit exceeded",
                        worker=slot.proc.name,
                        batch_id=str(busy[0]),
                        limit_s=limit,
                    )
                    fail(
                        busy[0],
                        f"time limit of {limit:g} s exceeded ({time_limit:g} s + "
                        f"{seconds_per_mib:g} s per MiB of its {size / MIB:.1f} MiB)",
                        final=True,
                    )
                    start(n)
                elif not slot.proc.is_alive():
                    log.error(
                        "refiner worker died; starting another",
                        worker=slot.proc.name,
                        exitcode=slot.proc.exitcode,
                    )
                    if busy is not None:
                        fail(busy[0], f"the worker died (exit code {slot.proc.exitcode})", False)
                    restarts = [t for t in restarts if now - t < 60] + [now]
                    if len(restarts) > 10:
                        log.error("refiner workers keep dying; stopping so the supervisor sees it")
                        return
                    start(n)
            if heartbeat is not None:
                heartbeat.touch()
            stop.wait(min(2.0, max(0.1, time_limit / 10)))
    finally:
        for slot in slots:
            if slot.proc.pid is not None and slot.proc.is_alive():
                os.kill(slot.proc.pid, signal.SIGTERM)
        for slot in slots:
            slot.proc.join(timeout=20)


def _die_with(parent: int) -> None:
    """A worker must not outlive its refiner: `daemon=True` covers a clean exit only, and
    an orphan left by a kill -9 would go on refining unsupervised. Linux delivers SIGKILL
    to us when the parent dies (the work is transactional, so that is safe)."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the request was in place
        os._exit(1)


def _worker(
    access: DatabaseAccess,
    keystore: Callable[[], KeyStore],
    parent: int,
    slot: _Slot,
    max_attempts: int,
) -> None:
    import signal

    _die_with(parent)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def on_batch(batch_id: uuid.UUID | None) -> None:
        if batch_id is None:
            slot.started.value = 0.0
        else:
            slot.batch[:] = batch_id.bytes
            slot.started.value = time.monotonic()

    # Load the unit registry (a second or two) before the first batch, not on its clock.
    conversion_for("/min", "8867-4")
    run(access, keystore(), stop, max_attempts=max_attempts, on_batch=on_batch)
