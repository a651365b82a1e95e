"""Servers left running by a `rejuve up` from before supervisord (detached processes with
pid files). Stopped once, when supervisord takes over; delete this module when no stack
started that way is left."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from backend.stack import system
from backend.stack.layout import Layout
from backend.stack.supervised import SupervisedService

# Where each service's pid file was, and a word of its command line (a recycled pid that
# belongs to another program is left alone).
_OLD = {
    "timescaledb": ("timescaledb/data/postmaster.pid", b"postgres"),
    "redis": ("redis/redis.pid", b"redis-server"),
    "prefect": ("run/prefect.pid", b"create_app"),
    "refiner": ("run/refiner.pid", b"refiner-run"),
    "backend": ("run/backend.pid", b"backend-run"),
    "jupyterhub": ("run/jupyterhub.pid", b"jupyterhub"),
    "flows": ("run/flows.pid", b"flows-run"),
}


def stop_unsupervised(layout: Layout, services: Sequence[SupervisedService]) -> list[str]:
    """Stop what an old `rejuve up` started, in reverse order; returns their names."""
    stopped = []
    for service in reversed(services):
        if service.name not in _OLD:
            continue
        rel, marker = _OLD[service.name]
        pid_file = layout.home / rel
        pid = system.read_pid(pid_file)
        if pid is None or not _runs(pid, marker):
            continue
        if service.name == "timescaledb":
            # SIGINT: PostgreSQL's fast shutdown, as `pg_ctl stop -m fast` sends.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
            system.wait_until(lambda p=pid: not system.pid_alive(p), 60, "TimescaleDB stopping")
        else:
            system.terminate(pid, timeout=30)
        if rel.startswith("run/"):
            pid_file.unlink(missing_ok=True)
        stopped.append(service.name)
    return stopped


def _runs(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
