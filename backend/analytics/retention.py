"""How long each zone keeps its data: whole chunks dropped with TimescaleDB's
`drop_chunks`, zone by zone, never below a floor.

- 0 days means "keep for ever" (the default for every zone).
- No zone may go below `minimum_days` (REJUVE_RETENTION_MINIMUM_DAYS): the shortest time
  the law or the network's policy requires health data to be kept; set it per deployment.
- The audit trail (`governance.audit_log`, the change log) is never dropped here: it is a
  chain, and what it must outlive (erasure, departures) is decided by the auditors.
- Dropping old chunks is not an erasure: it queues no rollup keys, so the rollups of
  dropped observations survive them (drop the rollup zones too if they must go).
- `drop_chunks` drops chunks entirely older than the cut-off, so up to one chunk interval
  (7 days for observations) more than configured is kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
from psycopg import sql

from backend.exceptions import Invalid

# Zone name -> hypertable.
ZONES: dict[str, str] = {
    "raw": "raw.records",
    "processed": "processed.observations",
    "hourly": "analytics.rollup_hourly",
    "daily": "analytics.rollup_daily",
}


@dataclass(frozen=True)
class Dropped:
    zone: str
    table: str
    keep_days: int
    chunks: int


def check(keep_days: Mapping[str, int], minimum_days: int) -> None:
    """Refuse a configuration that would drop data younger than the floor."""
    for zone, days in keep_days.items():
        if zone not in ZONES:
            raise Invalid(f"unknown zone {zone!r}", f"zones: {', '.join(ZONES)}")
        if days < 0:
            raise Invalid(f"retention of {zone} must be 0 (keep) or a number of days")
        if days and days < minimum_days:
            raise Invalid(
                f"retention of {zone} ({days} days) is below the minimum of {minimum_days} days",
                "REJUVE_RETENTION_MINIMUM_DAYS is what the law or policy requires",
            )


def apply(
    conn: psycopg.Connection,
    keep_days: Mapping[str, int],
    minimum_days: int,
    now: dt.datetime | None = None,
) -> list[Dropped]:
    """Drop each zone's chunks older than its retention (as the tables' owner)."""
    check(keep_days, minimum_days)
    now = now or dt.datetime.now(dt.UTC)
    out = []
    for zone, days in keep_days.items():
        if not days:
            continue
        table = ZONES[zone]
        if zone == "raw":
            # The raw zone refuses deletes (immutable) except on the erasure path; a whole
            # chunk past retention is dropped under the same transaction-local switch.
            conn.execute("set local rejuve.raw_erasure = 'on'")
        rows = conn.execute(
            sql.SQL("select drop_chunks({}, older_than => %s)").format(sql.Literal(table)),
            (now - dt.timedelta(days=days),),
        ).fetchall()
        out.append(Dropped(zone, table, days, len(rows)))
    return out
