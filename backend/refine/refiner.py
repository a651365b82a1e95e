"""Refining one landed batch, exactly once: parse, normalise, validate, dedupe, write.

Everything a batch produces (observations, quarantine rows, its ledger row and quality
metrics) is written in one transaction, and the ledger row's primary key makes a second
attempt a no-op. A refiner killed half-way leaves nothing behind; the batch stays
pending and the next run refines it from the start.

A batch that fails for another reason (an error, not "this is not the format it claims")
is retried with a growing pause, at most `max_attempts` times; then it is dead-lettered:
its ledger row says so with the reason, the steward sees it in `rejuve quality` and
`rejuve reconcile`, and it is never retried on its own (`rejuve batches retry` puts it
back, see `backend.refine.dead_letter`). A failing batch never holds up
the others: `pending` gives batches that are waiting out their pause no turn."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from backend.analytics import rollups
from backend.ingest.formats.registry import get as get_format
from backend.ingest.landing import PART_SIZE
from backend.ingest.model import FormatError, ParseReport, Rejected
from backend.keys.keystore import KeyStore
from backend.logs import get as get_logger
from backend.refine.normalise import Observation, Quarantined, normalise
from backend.refine.parts import PartsReader

log = get_logger(__name__)

_OBS_COLUMNS = sql.SQL(", ").join(
    map(
        sql.Identifier,
        (
            "member_id",
            "observed_at",
            "ended_at",
            "code",
            "value",
            "unit",
            "source",
            "qualifier",
            "tz_offset_minutes",
            "quality_flags",
            "dedup_key",
            "raw_record_id",
            "raw_received_at",
            "batch_id",
            "value_code",
            "value_system",
            "value_text",
            "value_boolean",
        ),
    )
)
_OBS_TYPES = [
    "uuid",
    "timestamptz",
    "timestamptz",
    "text",
    "float8",
    "text",
    "text",
    "text",
    "int2",
    "text[]",
    "bytea",
    "uuid",
    "timestamptz",
    "uuid",
    "text",
    "text",
    "text",
    "bool",
]
_NOT_CODED = (None, None, None, None)
_LATENESS_SAMPLE = 10_000
MAX_ATTEMPTS = 3
_RETRY_PAUSE_MAX = dt.timedelta(minutes=5)


@dataclass
class Outcome:
    batch_id: uuid.UUID
    parsed: int = 0
    processed: int = 0
    quarantined: int = 0
    duplicate: int = 0
    unmapped: Counter[str] = field(default_factory=Counter)
    records_read: int = 0
    error: str | None = None
    status: str = "refined"  # or "unreadable", "dead_letter"
    attempts: int = 1

    @property
    def balanced(self) -> bool:
        return self.parsed == self.processed + self.quarantined + self.duplicate


@dataclass(frozen=True)
class _Manifest:
    batch_id: uuid.UUID
    source: str
    fmt: str
    file_name: str | None
    member_id: uuid.UUID
    parse_options: dict[str, Any]
    record_count: int
    byte_count: int
    received_at: dt.datetime
    first_record: uuid.UUID | None
    first_received: dt.datetime | None


def pending(
    conn: psycopg.Connection, limit: int = 100, window: dt.timedelta = dt.timedelta(days=7)
) -> list[uuid.UUID]:
    """Landed batches without a ledger row, oldest first; a batch that failed before waits
    out its pause, and batches that never failed come first. A batch with an attempts row
    is taken whatever its age: a dead letter put back by `rejuve batches retry` may be
    older than the `window`."""
    rows = conn.execute(
        "select b.batch_id from raw.batches b"
        " left join processed.batch_attempts a using (batch_id)"
        " where (b.received_at > now() - %s or a.batch_id is not null)"
        "   and not exists (select 1 from processed.batch_ledger l where l.batch_id = b.batch_id)"
        "   and (a.next_attempt_at is null or a.next_attempt_at <= now())"
        " order by coalesce(a.attempts, 0), b.received_at limit %s",
        (window, limit),
    ).fetchall()
    conn.commit()
    return [r[0] for r in rows]


def _manifest(conn: psycopg.Connection, batch_id: uuid.UUID) -> _Manifest | None:
    row = conn.execute(
        "select b.batch_id, b.source, b.format, b.file_name, b.member_id, b.parse_options,"
        " b.record_count, b.byte_count, b.received_at, r.record_id, r.received_at"
        " from raw.batches b left join raw.records r"
        "   on r.batch_id = b.batch_id and r.part_no = 0"
        " where b.batch_id = %s",
        (batch_id,),
    ).fetchone()
    return _Manifest(*row) if row else None


def refine_batch(
    conn: psycopg.Connection,
    keys: KeyStore,
    batch_id: uuid.UUID,
    now: dt.datetime | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> Outcome | None:
    """Refine one batch. Returns None if it was already refined (or is being refined), or
    if it failed and will be tried again (see `fail_batch`)."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        # Inside a caller's transaction our commit would be a mere savepoint.
        raise RuntimeError("refine_batch() needs a connection with no transaction open")
    try:
        return _refine_once(conn, keys, batch_id, now or dt.datetime.now(dt.UTC))
    except psycopg.OperationalError:
        raise  # the database, not the batch: the caller reconnects
    except Exception as e:  # any fault of one batch must not stop the others
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
        return fail_batch(conn, batch_id, failure_reason(e), max_attempts)


def failure_reason(e: Exception) -> str:
    """What the ledger keeps of an error (stewards read it): never a traceback, whose
    locals may be health data; for a database error only its class and SQLSTATE, since
    PostgreSQL quotes the offending value in its messages."""
    if isinstance(e, psycopg.Error):
        return f"{type(e).__name__} (SQLSTATE {e.sqlstate})"
    first = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {first}"[:300]


def fail_batch(
    conn: psycopg.Connection,
    batch_id: uuid.UUID,
    reason: str,
    max_attempts: int = MAX_ATTEMPTS,
    final: bool = False,
) -> Outcome | None:
    """Count a failed attempt; dead-letter the batch after `max_attempts` (at once when
    `final`, e.g. the time limit was exceeded: trying again would cost as much). Returns
    the dead-letter outcome, or None when the batch will be tried again."""
    with conn.transaction():
        row = conn.execute(
            "insert into processed.batch_attempts as a (batch_id, attempts, last_error)"
            " values (%s, 1, %s) on conflict (batch_id) do update"
            " set attempts = a.attempts + 1, last_error = excluded.last_error,"
            "     last_attempt_at = now()"
            " returning attempts",
            (batch_id, reason),
        ).fetchone()
        attempts = int(row[0]) if row else 1
        pause = min(dt.timedelta(seconds=2**attempts), _RETRY_PAUSE_MAX)
        conn.execute(
            "update processed.batch_attempts set next_attempt_at = now() + %s where batch_id = %s",
            (pause, batch_id),
        )
        dead = final or attempts >= max_attempts
        outcome = None
        if (
            dead
            and conn.execute(
                "select 1 from processed.batch_ledger where batch_id = %s", (batch_id,)
            ).fetchone()
            is None
        ):
            outcome = Outcome(
                batch_id,
                error=f"dead-lettered after {attempts} attempt(s): {reason}",
                status="dead_letter",
                attempts=attempts,
            )
            _write_ledger(conn, outcome)
            m = _manifest(conn, batch_id)
            if m is not None:
                _write_quality(conn, m, outcome, 0, [], dt.datetime.now(dt.UTC))
    log.warning(
        "batch dead-lettered" if outcome else "batch failed to refine; will retry",
        batch_id=str(batch_id),
        attempts=attempts,
    )
    return outcome


def _refine_once(
    conn: psycopg.Connection, keys: KeyStore, batch_id: uuid.UUID, now: dt.datetime
) -> Outcome | None:
    with conn.transaction():
        # Two refiners may race for the same notification: one takes the batch.
        locked = conn.execute(
            "select pg_try_advisory_xact_lock(hashtextextended(%s, 0))", (str(batch_id),)
        ).fetchone()
        if not locked or not locked[0]:
            return None
        done = conn.execute(
            "select 1 from processed.batch_ledger where batch_id = %s", (batch_id,)
        ).fetchone()
        if done:
            return None
        m = _manifest(conn, batch_id)
        if m is None:
            raise LookupError(f"batch {batch_id} does not exist")
        try:
            with conn.transaction():
                outcome = _refine(conn, keys, m, now)
        except FormatError as e:
            # The batch stays in raw as received; its ledger row says why it was not read.
            outcome = Outcome(batch_id, error=str(e), status="unreadable")
            _write_ledger(conn, outcome)
            _write_quality(conn, m, outcome, 0, [], now)
    log.info(
        "batch refined",
        batch_id=str(batch_id),
        fmt=m.fmt,
        parsed=outcome.parsed,
        processed=outcome.processed,
        quarantined=outcome.quarantined,
        duplicate=outcome.duplicate,
        failed=outcome.error is not None,
    )
    return outcome


def _reader(conn: psycopg.Connection, keys: KeyStore, m: _Manifest) -> PartsReader:
    def fetch(part_no: int) -> tuple[uuid.UUID, bytes]:
        row = conn.execute(
            "select record_id, payload from raw.records where batch_id = %s and part_no = %s",
            (m.batch_id, part_no),
        ).fetchone()
        if row is None:
            raise LookupError(f"batch {m.batch_id} has no part {part_no}")
        return row[0], row[1]

    return PartsReader(fetch, PART_SIZE, m.byte_count, m.member_id, keys)


def _refine(
    conn: psycopg.Connection,
    keys: KeyStore,
    m: _Manifest,
    now: dt.datetime,
) -> Outcome:
    out = Outcome(m.batch_id)
    report = ParseReport()
    quarantined: list[Quarantined] = []
    lateness: list[float] = []
    # A sampling rng, seeded per batch so reruns agree; nothing secret depends on it.
    rng = random.Random(m.batch_id.int)  # noqa: S311
    conn.execute(
        "create temp table if not exists refine_stage"
        " (like processed.observations including defaults) on commit delete rows"
    )
    stream = io.BufferedReader(_reader(conn, keys, m), buffer_size=1024 * 1024)
    parsed = get_format(m.fmt).parse(
        stream, report, name=m.file_name or m.fmt, options=m.parse_options
    )
    # Parts are read on the same connection as the COPY, so parse everything first into
    # the stage in slices: COPY cannot share its connection with other statements.
    staged = 0
    batch: list[Observation] = []

    def flush() -> None:
        nonlocal staged
        if not batch:
            return
        with conn.cursor().copy(
            sql.SQL("COPY refine_stage ({}) FROM STDIN (FORMAT BINARY)").format(_OBS_COLUMNS)
        ) as copy:
            # Binary COPY with declared types: about 4x the rows/s of text COPY here.
            copy.set_types(_OBS_TYPES)
            for o in batch:
                copy.write_row(
                    (
                        o.member_id,
                        o.observed_at,
                        o.ended_at,
                        o.code,
                        o.value,
                        o.unit,
                        o.source,
                        o.qualifier,
                        o.tz_offset_minutes,
                        o.quality_flags,
                        o.dedup_key,
                        m.first_record,
                        m.first_received,
                        m.batch_id,
                        *(o.coded or _NOT_CODED),
                    )
                )
        staged += len(batch)
        batch.clear()

    for item in parsed:
        out.parsed += 1
        if isinstance(item, Rejected):
            quarantined.append(
                Quarantined(item.reason, item.field, item.detail, item.locator, item.record)
            )
            continue
        result = normalise(item, m.member_id, now)
        if isinstance(result, Quarantined):
            quarantined.append(result)
            continue
        batch.append(result)
        seen = result.ended_at or result.observed_at
        late = (m.received_at - seen).total_seconds()
        if len(lateness) < _LATENESS_SAMPLE:
            lateness.append(late)
        elif (j := rng.randrange(out.parsed)) < _LATENESS_SAMPLE:
            lateness[j] = late
        if len(batch) >= 5000:
            flush()
    flush()
    # The rollup keys these rows touch are queued in the same statement (exactly once).
    inserted, _ = rollups.insert_staged(conn, "refine_stage", _OBS_COLUMNS)
    out.processed = inserted
    out.duplicate = staged - inserted
    # A record already open in the quarantine (the same file ingested again) is a
    # duplicate of that entry, not a second one.
    out.quarantined = _write_quarantine(conn, m, quarantined)
    out.duplicate += len(quarantined) - out.quarantined
    out.unmapped = report.unmapped
    out.records_read = report.read
    _write_ledger(conn, out)
    missing = sum(1 for q in quarantined if q.reason == "missing_value")
    _write_quality(conn, m, out, missing, lateness, now)
    return out


def _jsonable(o: object) -> object:
    """What jsonb stores: no NaN or Infinity token, no NUL, no lone surrogate."""
    if isinstance(o, float) and not math.isfinite(o):
        return repr(o)
    if isinstance(o, str):
        if "\x00" in o or not o.isascii():
            return o.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
        return o
    if isinstance(o, dict):
        return {str(_jsonable(k)): _jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_jsonable(v) for v in o]
    if o is None or isinstance(o, bool | int | float):
        return o
    return _jsonable(str(o))


def _record_key(member: uuid.UUID, record: object) -> bytes:
    h = hashlib.blake2b(member.bytes, digest_size=16)
    h.update(json.dumps(record, sort_keys=True).encode())
    return h.digest()


def _write_quarantine(conn: psycopg.Connection, m: _Manifest, rows: list[Quarantined]) -> int:
    """Returns how many entries were opened (the others were open already)."""
    if not rows:
        return 0
    records = [_jsonable(q.record) for q in rows]
    with conn.cursor() as cur:
        cur.executemany(
            "insert into processed.quarantine (raw_record_id, raw_received_at, member_id,"
            " reason, field, detail, record, batch_id, locator, record_key)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " on conflict (record_key) where status = 'open' do nothing",
            [
                (
                    m.first_record,
                    m.first_received,
                    m.member_id,
                    q.reason,
                    q.field,
                    _jsonable(q.detail),
                    Jsonb(record),
                    m.batch_id,
                    _jsonable(q.locator),
                    _record_key(m.member_id, record),
                )
                for q, record in zip(rows, records, strict=True)
            ],
        )
        # executemany's rowcount is the sum over all rows (psycopg >= 3.1)
        return max(cur.rowcount, 0)


def _write_ledger(conn: psycopg.Connection, out: Outcome) -> None:
    conn.execute(
        "insert into processed.batch_ledger (batch_id, parsed, processed, quarantined,"
        " duplicate, unmapped, records_read, error, status, attempts)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            out.batch_id,
            out.parsed,
            out.processed,
            out.quarantined,
            out.duplicate,
            Jsonb(_jsonable(dict(out.unmapped))),
            out.records_read,
            out.error,
            out.status,
            out.attempts,
        ),
    )


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _write_quality(
    conn: psycopg.Connection,
    m: _Manifest,
    out: Outcome,
    missing: int,
    lateness: list[float],
    now: dt.datetime,
) -> None:
    parsed = out.parsed
    # Completeness: the share of parsed records that arrived with every required field.
    # A batch with nothing parsed has no rates (it is not "100 % complete").
    conn.execute(
        "insert into analytics.batch_quality (batch_id, source, format, received_at,"
        " completeness, validity_rate, duplicate_rate, lateness_p50_s, lateness_p95_s,"
        " refine_lag_s, error) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            m.batch_id,
            m.source,
            m.fmt,
            m.received_at,
            1.0 - missing / parsed if parsed else None,
            (out.processed + out.duplicate) / parsed if parsed else None,
            out.duplicate / parsed if parsed else None,
            _percentile(lateness, 0.5),
            _percentile(lateness, 0.95),
            (now - m.received_at).total_seconds(),
            out.error,
        ),
    )
