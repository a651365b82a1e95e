"""Dead-lettered batches back in the refiner's queue, once their cause is fixed (a refiner
bug deployed, the time limit raised): `rejuve batches retry`.

A retry removes the batch's dead-letter ledger row and quality row (the refiner writes
both again), counts its attempts afresh from 0 and wakes the refiner. The batch is then
refined, or dead-lettered again after `refine_max_attempts` new tries. Only dead letters
are put back: an unreadable batch would be read the same way again, and a refined one
must never be refined twice."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from backend.exceptions import Conflict, NotFound
from backend.ingest.landing import NOTIFY_CHANNEL

_WHY_NOT = {
    None: "it has not been refined yet: the refiner has it",
    "refined": "it was refined",
    "unreadable": "its file cannot be read as its format, and would not be next time:"
    " land a corrected file",
}


@dataclass(frozen=True)
class PutBack:
    batch_id: uuid.UUID
    attempts: int  # the failed attempts before it was dead-lettered
    error: str | None  # why it was dead-lettered


def retry(conn: psycopg.Connection, batch_ids: Sequence[uuid.UUID] | None) -> list[PutBack]:
    """Put these dead-lettered batches (None: every one) back in the queue, in one
    transaction: if one of `batch_ids` is not dead-lettered nothing is put back (Conflict
    says why)."""
    ids = None if batch_ids is None else list(dict.fromkeys(batch_ids))
    with conn.transaction():
        if ids is not None:
            status: dict[uuid.UUID, str | None] = dict(
                conn.execute(
                    "select b.batch_id, l.status from raw.batches b"
                    " left join processed.batch_ledger l using (batch_id)"
                    " where b.batch_id = any(%s)",
                    (ids,),
                ).fetchall()
            )
            for batch_id in ids:
                if batch_id not in status:
                    raise NotFound(f"no batch {batch_id}")
                if status[batch_id] != "dead_letter":
                    raise Conflict(
                        f"batch {batch_id} is not dead-lettered: {_WHY_NOT.get(status[batch_id])}"
                    )
        rows = conn.execute(
            "delete from processed.batch_ledger where status = 'dead_letter'"
            " and (%(ids)s::uuid[] is null or batch_id = any(%(ids)s::uuid[]))"
            " returning batch_id, attempts, error",
            {"ids": ids},
        ).fetchall()
        if ids is not None and len(rows) != len(ids):  # another retry came first
            raise Conflict("a batch was put back by someone else meanwhile: nothing changed")
        put_back = [PutBack(*r) for r in rows]
        queued = [p.batch_id for p in put_back]
        conn.execute("delete from analytics.batch_quality where batch_id = any(%s)", (queued,))
        # Counted afresh; the row stays so that `pending` finds the batch at any age.
        conn.execute(
            "insert into processed.batch_attempts as a (batch_id, attempts, last_error)"
            " select id, 0, coalesce(error, 'dead-lettered')"
            "   from unnest(%s::uuid[], %s::text[]) as t(id, error)"
            " on conflict (batch_id) do update set attempts = 0, next_attempt_at = now()",
            (queued, [p.error for p in put_back]),
        )
        if queued:
            conn.execute("select pg_notify(%s, %s)", (NOTIFY_CHANNEL, "retry"))
    return sorted(put_back, key=lambda p: str(p.batch_id))
