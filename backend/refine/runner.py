"""The refiner's loop: woken by NOTIFY when a batch lands, polling as a safety net.

A long-running process rather than a Prefect deployment: a device batch must be in the
processed zone within seconds of its acknowledgement, and a flow run per batch would add
more scheduling latency and database writes than refining the batch itself. Files and
exports go through Prefect flows; both paths call the same `refine_batch`."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from backend.db.access import DatabaseAccess
from backend.ingest.landing import NOTIFY_CHANNEL
from backend.keys.keystore import KeyStore
from backend.logs import get as get_logger
from backend.refine.refiner import pending, refine_batch

log = get_logger(__name__)


def drain(conn: psycopg.Connection, keys: KeyStore) -> int:
    """Refine every pending batch; returns how many were refined."""
    done = 0
    while batch_ids := pending(conn):
        progressed = False
        for batch_id in batch_ids:
            try:
                if refine_batch(conn, keys, batch_id) is not None:
                    done += 1
                    progressed = True
            except psycopg.OperationalError:
                raise
            except Exception:
                # One poisonous batch must not stop the others; it stays pending and
                # shows up in `rejuve reconcile`.
                log.exception("batch failed to refine", batch_id=str(batch_id))
        if not progressed:
            break
    return done


def run(
    access: DatabaseAccess,
    keys: KeyStore,
    stop: threading.Event,
    heartbeat: Path | None = None,
    poll_seconds: float = 2.0,
    on_idle: Callable[[], None] = lambda: None,
) -> None:
    with (
        access.connect("refiner", autocommit=True) as listener,
        access.connect("refiner") as worker,
    ):
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        log.info("refiner listening", channel=NOTIFY_CHANNEL)
        while not stop.is_set():
            drain(worker, keys)
            if heartbeat is not None:
                heartbeat.touch()
            on_idle()
            # Returns on the first notification, or after poll_seconds without one.
            for _ in listener.notifies(timeout=poll_seconds, stop_after=1):
                pass
            time.sleep(0)  # let a stop signal through between rounds


def run_workers(
    access: DatabaseAccess,
    keystore: Callable[[], KeyStore],
    stop: threading.Event,
    workers: int,
    heartbeat: Path | None = None,
) -> None:
    """Run `workers` refiner processes. Batches are shared out by the advisory lock in
    `refine_batch`; the parent only watches them and keeps the heartbeat."""
    import multiprocessing as mp
    import signal

    if workers <= 1:
        run(access, keystore(), stop, heartbeat=heartbeat)
        return
    ctx = mp.get_context("fork")  # before any connection exists in this process
    parent = os.getpid()
    procs = [
        ctx.Process(
            target=_worker, args=(access, keystore, parent), daemon=True, name=f"refiner-{n}"
        )
        for n in range(workers)
    ]
    for proc in procs:
        proc.start()
    try:
        while not stop.is_set():
            dead = [p for p in procs if not p.is_alive()]
            if dead:
                log.error(
                    "refiner worker died; stopping so the supervisor sees it",
                    worker=dead[0].name,
                    exitcode=dead[0].exitcode,
                )
                break
            if heartbeat is not None:
                heartbeat.touch()
            stop.wait(2.0)
    finally:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.join(timeout=20)


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


def _worker(access: DatabaseAccess, keystore: Callable[[], KeyStore], parent: int) -> None:
    import signal

    _die_with(parent)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run(access, keystore(), stop)
