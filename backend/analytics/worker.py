"""The rollup service: drains the invalidation queue as it fills, so a refined batch is in
the rollups within seconds. One per database (see rollups.py on why only one)."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg

from backend.analytics import rollups
from backend.db.access import DatabaseAccess
from backend.logs import get as get_logger

log = get_logger(__name__)

# An empty queue costs one index probe per poll: cheap enough to ask twice a second.
IDLE_SECONDS = 0.5
RETRY_SECONDS = 5.0


def run(
    db: DatabaseAccess,
    stop: threading.Event,
    *,
    limit: int = 20_000,
    idle_seconds: float = IDLE_SECONDS,
    heartbeat: Path | None = None,
) -> None:
    """Refresh until `stop` is set; a lost database connection is retried, not fatal
    (the claim of a failed round was rolled back: nothing is lost). `heartbeat` is
    touched every round: the stack's health check for this service."""
    while not stop.is_set():
        try:
            with db.connect("refiner") as conn:
                while not stop.is_set():
                    if heartbeat is not None:
                        heartbeat.touch()
                    r = rollups.refresh(conn, limit)
                    if r.keys:
                        log.info(
                            "rollups refreshed",
                            keys=r.keys,
                            days=r.days,
                            member_days=r.member_days,
                            seconds=round(r.seconds, 3),
                        )
                    else:
                        stop.wait(idle_seconds)
        except psycopg.Error as e:
            log.error("rollup refresh failed; retrying", error=type(e).__name__)
            stop.wait(RETRY_SECONDS)
