"""Proof that nothing was lost: for every landed batch, parsed = processed + quarantined +
duplicate, and the rows really in the processed zone match the ledger's counts.

A batch that could not be refined (its file unreadable, or dead-lettered after failing
`refine_max_attempts` times or exceeding the time limit) is a failure here: its data is
in the raw zone, not in the processed zone, and someone has to act."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from backend.db.prefix import resolve_id


@dataclass
class BatchLine:
    batch_id: uuid.UUID
    fmt: str
    received_at: dt.datetime
    refined: bool
    parsed: int = 0
    processed: int = 0
    quarantined: int = 0
    duplicate: int = 0
    unmapped: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    status: str | None = None  # refined, unreadable, dead_letter; None before refinement
    attempts: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # quarantine reasons, counted
    observation_rows: int = 0
    quarantine_rows: int = 0
    released: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Reconciliation:
    batches: list[BatchLine]
    pending: int  # landed within the grace period, not refined yet: not (yet) a problem

    @property
    def ok(self) -> bool:
        return all(b.ok for b in self.batches)

    def totals(self) -> dict[str, Any]:
        unmapped: Counter[str] = Counter()
        for b in self.batches:
            unmapped.update(b.unmapped)
        keys = ("parsed", "processed", "quarantined", "duplicate")
        out: dict[str, Any] = {k: sum(getattr(b, k) for b in self.batches) for k in keys}
        out["unmapped"] = dict(unmapped.most_common())
        out["batches"] = len(self.batches)
        out["failed_batches"] = sum(1 for b in self.batches if b.error)
        out["pending"] = self.pending
        out["problems"] = sum(len(b.problems) for b in self.batches)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "totals": self.totals(),
            "batches": [{**asdict(b), "ok": b.ok} for b in self.batches],
        }


_QUERY = """
select b.batch_id, b.format, b.received_at, l.batch_id is not null,
       coalesce(l.parsed, 0), coalesce(l.processed, 0), coalesce(l.quarantined, 0),
       coalesce(l.duplicate, 0), coalesce(l.unmapped, '{}'), l.error, l.status,
       coalesce(l.attempts, a.attempts, 0),
       coalesce((select jsonb_object_agg(reason, n) from (
           select reason, count(*) n from processed.quarantine q
            where q.batch_id = b.batch_id group by reason) r), '{}'),
       (select count(*) from processed.observations o where o.batch_id = b.batch_id),
       (select count(*) from processed.quarantine q where q.batch_id = b.batch_id),
       (select count(*) from processed.quarantine q
         where q.batch_id = b.batch_id and q.status = 'released')
from raw.batches b left join processed.batch_ledger l using (batch_id)
     left join processed.batch_attempts a using (batch_id)
where (%(batch)s::uuid is null or b.batch_id = %(batch)s::uuid)
  and (%(since)s::timestamptz is null or b.received_at >= %(since)s::timestamptz)
order by b.received_at
"""


def resolve_batch(conn: psycopg.Connection, value: str) -> uuid.UUID:
    """The batch a whole id or a unique prefix of one names (tables show 8 characters)."""
    return resolve_id(conn, value, table="raw.batches", column="batch_id", what="batch")


def reconcile(
    conn: psycopg.Connection,
    *,
    batch: uuid.UUID | None = None,
    since: dt.datetime | None = None,
    grace: dt.timedelta = dt.timedelta(minutes=5),
) -> Reconciliation:
    now = conn.execute("select now()").fetchone()
    assert now is not None
    rows = conn.execute(_QUERY, {"batch": batch, "since": since}).fetchall()
    lines: list[BatchLine] = []
    pending = 0
    for r in rows:
        line = BatchLine(
            batch_id=r[0],
            fmt=r[1],
            received_at=r[2],
            refined=r[3],
            parsed=r[4],
            processed=r[5],
            quarantined=r[6],
            duplicate=r[7],
            unmapped=dict(r[8]),
            error=r[9],
            status=r[10],
            attempts=r[11],
            reasons=dict(r[12]),
            observation_rows=r[13],
            quarantine_rows=r[14],
            released=r[15],
        )
        if line.error:
            line.problems.append(f"failed ({line.status}): {line.error}")
        elif not line.refined:
            if now[0] - line.received_at < grace:
                pending += 1
                continue
            line.problems.append(
                "landed but not refined"
                + (f" ({line.attempts} failed attempt(s) so far)" if line.attempts else "")
            )
        else:
            if line.parsed != line.processed + line.quarantined + line.duplicate:
                line.problems.append(
                    f"parsed {line.parsed} != processed {line.processed} + quarantined "
                    f"{line.quarantined} + duplicate {line.duplicate}"
                )
            if line.observation_rows != line.processed + line.released:
                line.problems.append(
                    f"{line.observation_rows} observation rows, ledger says {line.processed}"
                    f" (+{line.released} released from quarantine)"
                )
            if line.quarantine_rows != line.quarantined:
                line.problems.append(
                    f"{line.quarantine_rows} quarantine rows, ledger says {line.quarantined}"
                )
        lines.append(line)
    conn.rollback()
    return Reconciliation(lines, pending)
