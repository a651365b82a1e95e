"""The data steward's side of the quarantine: list, inspect, release after correction,
reject. A release re-runs normalisation on the corrected record; it is refused if the
record would still fail."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from backend.analytics import rollups
from backend.db.prefix import resolve_id
from backend.exceptions import Conflict, NotFound, UserError
from backend.ingest.model import Coded, Sample
from backend.refine.normalise import Quarantined, normalise


@dataclass(frozen=True)
class Entry:
    quarantine_id: uuid.UUID
    batch_id: uuid.UUID | None
    member_id: uuid.UUID | None
    reason: str
    field: str | None
    detail: str | None
    locator: str | None
    status: str
    quarantined_at: dt.datetime
    record: dict[str, Any]


_COLUMNS = sql.SQL(", ").join(
    sql.Identifier(c)
    for c in (
        "quarantine_id",
        "batch_id",
        "member_id",
        "reason",
        "field",
        "detail",
        "locator",
        "status",
        "quarantined_at",
        "record",
    )
)


def list_entries(
    conn: psycopg.Connection,
    *,
    status: str | None = "open",
    batch: uuid.UUID | None = None,
    reason: str | None = None,
    since: dt.datetime | None = None,
    after: tuple[dt.datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[Entry]:
    """Newest first; `after` (the last entry's time and id) continues a listing: keyset
    pagination, exact when several records share a timestamp."""
    at, last_id = after or (None, None)
    rows = conn.execute(
        sql.SQL(
            "select {} from processed.quarantine"
            " where (%(s)s::text is null or status = %(s)s)"
            "   and (%(b)s::uuid is null or batch_id = %(b)s)"
            "   and (%(r)s::text is null or reason = %(r)s)"
            "   and (%(since)s::timestamptz is null or quarantined_at >= %(since)s)"
            "   and (%(at)s::timestamptz is null"
            "        or (quarantined_at, quarantine_id) < (%(at)s::timestamptz, %(id)s::uuid))"
            " order by quarantined_at desc, quarantine_id desc limit %(n)s"
        ).format(_COLUMNS),
        {"s": status, "b": batch, "r": reason, "since": since, "at": at, "id": last_id, "n": limit},
    ).fetchall()
    return [Entry(*r) for r in rows]


def resolve(conn: psycopg.Connection, value: str) -> uuid.UUID:
    """The entry a whole id or a unique prefix of one names (what a table shows)."""
    return resolve_id(
        conn, value, table="processed.quarantine", column="quarantine_id", what="quarantined record"
    )


def get(conn: psycopg.Connection, quarantine_id: uuid.UUID) -> Entry:
    row = conn.execute(
        sql.SQL("select {} from processed.quarantine where quarantine_id = %s").format(_COLUMNS),
        (quarantine_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no quarantined record {quarantine_id}")
    return Entry(*row)


def _open(conn: psycopg.Connection, quarantine_id: uuid.UUID) -> Entry:
    entry = get(conn, quarantine_id)
    if entry.status != "open":
        raise Conflict(f"quarantined record {quarantine_id} is already {entry.status}")
    return entry


def _coded(record: dict[str, Any]) -> Coded | None:
    parts = [record.get(k) for k in ("value_code", "value_system", "value_text")]
    boolean = record.get("value_boolean")
    if all(p is None for p in parts) and boolean is None:
        return None
    if boolean is not None and not isinstance(boolean, bool):
        raise ValueError("value_boolean must be true or false")
    code, system, text = (None if p is None else str(p) for p in parts)
    return Coded(code, system, text, boolean)


def _as_sample(record: dict[str, Any], locator: str) -> Sample:
    try:
        coded = _coded(record)
        value = record.get("value")
        if value is None and coded is None:
            raise ValueError("no value")
        return Sample(
            code=str(record["code"]),
            value=None if value is None else float(value),
            unit=str(record["unit"]),
            start=dt.datetime.fromisoformat(str(record["start"])),
            end=dt.datetime.fromisoformat(str(record["end"])) if record.get("end") else None,
            source=str(record.get("source") or "unknown"),
            locator=locator,
            qualifier=record.get("qualifier"),
            tz_offset_minutes=record.get("tz_offset_minutes"),
            member_ref=record.get("member_ref"),
            coded=coded,
            flags=tuple(str(f) for f in record.get("flags") or ()),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"the corrected record is incomplete or malformed: {e}") from None


def release(
    conn: psycopg.Connection,
    quarantine_id: uuid.UUID,
    corrections: dict[str, Any],
    note: str | None = None,
) -> uuid.UUID:
    """Correct, re-validate and release a record into the processed zone."""
    with conn.transaction():
        entry = _open(conn, quarantine_id)
        if entry.member_id is None or entry.batch_id is None:
            raise UserError("this record has no member or batch and cannot be released")
        record = {**entry.record, **corrections}
        sample = _as_sample(record, entry.locator or "")
        result = normalise(sample, entry.member_id, dt.datetime.now(dt.UTC))
        if isinstance(result, Quarantined):
            raise UserError(f"still invalid: {result.reason} ({result.field}): {result.detail}")
        raw = conn.execute(
            "select raw_record_id, raw_received_at from processed.quarantine"
            " where quarantine_id = %s",
            (quarantine_id,),
        ).fetchone()
        assert raw is not None
        inserted = conn.execute(
            "insert into processed.observations (member_id, observed_at, ended_at, code, value,"
            " unit, source, qualifier, tz_offset_minutes, quality_flags, dedup_key,"
            " raw_record_id, raw_received_at, batch_id,"
            " value_code, value_system, value_text, value_boolean)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " on conflict (dedup_key, observed_at) do nothing",
            (
                entry.member_id,
                result.observed_at,
                result.ended_at,
                result.code,
                result.value,
                result.unit,
                result.source,
                result.qualifier,
                result.tz_offset_minutes,
                [*result.quality_flags, "released_from_quarantine"],
                result.dedup_key,
                raw[0],
                raw[1],
                entry.batch_id,
                *(result.coded or (None, None, None, None)),
            ),
        ).rowcount
        if inserted == 0:
            raise UserError("the corrected record duplicates an existing observation: reject it")
        if result.value is not None:
            # The rollups of that hour change with it (same transaction: exactly once);
            # rollups are numeric only, so a coded result queues nothing.
            rollups.queue_keys(conn, entry.member_id, result.code, result.observed_at, "release")
        conn.execute(
            "update processed.quarantine set status = 'released', resolved_at = now(),"
            " resolution_note = %s where quarantine_id = %s",
            (note, quarantine_id),
        )
    return quarantine_id


def reject(conn: psycopg.Connection, quarantine_id: uuid.UUID, note: str | None = None) -> None:
    with conn.transaction():
        _open(conn, quarantine_id)
        conn.execute(
            "update processed.quarantine set status = 'rejected', resolved_at = now(),"
            " resolution_note = %s where quarantine_id = %s",
            (note, quarantine_id),
        )
