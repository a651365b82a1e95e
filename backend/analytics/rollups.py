"""Rollups of the processed zone, kept exact under late, duplicate and corrected data.

Whoever changes `processed.observations` queues the (member, code, hour) keys it touched
in `analytics.rollup_dirty`, in the same transaction (`QUEUE_INSERTED`, `queue_keys`).
`refresh` claims queued keys in ingestion order (DELETE ... FOR UPDATE SKIP LOCKED: a
crash rolls the claim back, keys committed after the claim wait for the next round) and,
in one transaction:

1. recomputes each claimed hour from the observations (`rollup_hourly`);
2. merges each touched day from its hours (`rollup_daily`: sums of counts, sums and sums
   of squares, min of mins, ... exact up to floating-point rounding);
3. rebuilds the member-day summaries of the touched days (`member_daily`), and the next
   day's too for sleep (a night belongs to the day it ends);
4. queues those member-days for the feature store (`analytics.feature_dirty`).

Days are UTC days. One refresher at a time (the `rollups` service): two recomputing the
same key from different snapshots could commit the older result last.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

# The insert of refined rows, with the keys it touched queued in the same statement: only
# rows that went in (duplicates touch nothing). `{cols}` and the staging table are the
# caller's. Returns (rows inserted, keys queued). Rollups are numeric: a coded or text
# result (value null, migration 0015) queues no key.
QUEUE_INSERTED = """
with ins as (
    insert into processed.observations ({cols}) select {cols} from {stage}
    on conflict (dedup_key, observed_at) do nothing
    returning member_id, code, observed_at, value
), queued as (
    insert into analytics.rollup_dirty (member_id, code, hour, cause)
    select distinct member_id, code, time_bucket('1 hour', observed_at), %(cause)s from ins
     where value is not null
    returning 1
)
select (select count(*) from ins), (select count(*) from queued)
"""


def insert_staged(
    conn: psycopg.Connection, stage: str, cols: sql.Composable, cause: str = "refine"
) -> tuple[int, int]:
    """Refined rows from the staging table `stage` (columns `cols`) into the processed
    zone, their rollup keys queued by the same statement (`QUEUE_INSERTED`): (rows
    inserted, keys queued). The caller owns the transaction."""
    row = conn.execute(
        sql.SQL(QUEUE_INSERTED).format(cols=cols, stage=sql.Identifier(stage)), {"cause": cause}
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


# What a member-day summary is made of (catalog codes; see backend/ingest/catalog.py).
STEPS = ("55423-8", "41950-7")  # per interval, else the device's daily total
RESTING_HR = "40443-4"
HRV = "80404-7"
WEIGHT = "29463-7"
SYSTOLIC, DIASTOLIC = "8480-6", "8462-4"
HEART_RATE = "8867-4"  # minutes with heart-rate data = wear time
WORKOUT = "x-rejuve:workout"
SLEEP_STAGE = "x-rejuve:sleep-stage"


def queue_keys(
    conn: psycopg.Connection,
    member: uuid.UUID,
    code: str,
    observed_at: object,
    cause: str,
) -> None:
    """Queue one observation's key (a released quarantine entry, a correction)."""
    conn.execute(
        "insert into analytics.rollup_dirty (member_id, code, hour, cause)"
        " values (%s, %s, time_bucket('1 hour', %s::timestamptz), %s)",
        (member, code, observed_at, cause),
    )


def queue_all(conn: psycopg.Connection, member: uuid.UUID | None = None) -> int:
    """Queue every key of the processed zone (or of one member): a full rebuild, e.g.
    after restoring a backup or changing how a summary is computed."""
    return conn.execute(
        "insert into analytics.rollup_dirty (member_id, code, hour, cause)"
        " select distinct member_id, code, time_bucket('1 hour', observed_at), 'rebuild'"
        " from processed.observations where (%(member)s::uuid is null or member_id = %(member)s)"
        " and value is not null",
        {"member": member},
    ).rowcount


@dataclass(frozen=True)
class Refreshed:
    keys: int  # distinct (member, code, hour) claimed
    days: int  # (member, code, day) merged
    member_days: int  # summaries rebuilt
    seconds: float
    # Where the time went, by step (claim, hourly, daily, member_days): for benchmarks.
    steps: dict[str, float] = field(default_factory=dict)


_SETUP = """
create temp table if not exists rollup_keys
    (member_id uuid, code text, hour timestamptz) on commit delete rows;
create temp table if not exists rollup_days
    (member_id uuid, code text, day timestamptz) on commit delete rows;
create temp table if not exists rollup_member_days
    (member_id uuid, day date) on commit delete rows;
create temp table if not exists rollup_sleep_days
    (member_id uuid, day date) on commit delete rows;
create temp table if not exists rollup_sleep
    (member_id uuid, day date, source text, asleep float8, awake float8, in_bed float8)
    on commit delete rows;
create temp table if not exists rollup_kept_sleep
    (member_id uuid, day date, minutes float8, efficiency float8) on commit delete rows;
"""

# The oldest `limit` queue entries, and with them every other visible entry of the same
# keys: an hour that several batches touched (a device syncing every few minutes) is
# recomputed once, not once per batch.
_CLAIM = """
with picked as (
    select distinct member_id, code, hour from (
        select member_id, code, hour from analytics.rollup_dirty order by id
         limit %(limit)s for update skip locked) oldest
), claimed as (
    delete from analytics.rollup_dirty d using picked p
     where d.member_id = p.member_id and d.code = p.code and d.hour = p.hour
    returning d.member_id, d.code, d.hour
)
insert into rollup_keys select distinct member_id, code, hour from claimed
"""

# The chunks of the observations a set of keys falls in. Keys are looked up chunk by
# chunk: through the hypertable, every lookup paid runtime chunk exclusion over all
# chunks (0.5 ms a key at 180 chunks, growing with history); within one chunk it is one
# index probe. Chunk boundaries fall on whole hours (12-hour chunks), so an hour's rows
# are in one chunk.
_CHUNKS = """
select c.chunk_schema, c.chunk_name, c.range_start, c.range_end
  from timescaledb_information.chunks c
 where c.hypertable_schema = 'processed' and c.hypertable_name = 'observations'
   and exists (select 1 from {keys} k
                where {start} < c.range_end and {start} + {reach}::interval > c.range_start)
 order by c.range_start
"""

_HOURLY_DELETE = """
delete from analytics.rollup_hourly r using rollup_keys k
 where r.member_id = k.member_id and r.code = k.code and r.bucket = k.hour
"""

# Ties in time are broken by value, so a recomputation gives the same `last` every time.
# A join, not a lookup per key: with the keys analysed the planner probes the index for a
# few late keys and hashes an hour's worth of keys against the chunk (3.6x the keys/s).
_HOURLY_CHUNK = """
insert into analytics.rollup_hourly
    (member_id, code, bucket, n, sum, sumsq, min, max, last, last_at, minutes, unit)
select k.member_id, k.code, k.hour, count(*), sum(o.value), sum(o.value * o.value),
       min(o.value), max(o.value),
       (array_agg(o.value order by o.observed_at desc, o.value desc))[1],
       max(o.observed_at), count(distinct date_trunc('minute', o.observed_at)), min(o.unit)
  from rollup_keys k
  join {chunk} o
    on o.member_id = k.member_id and o.code = k.code
   and o.observed_at >= k.hour and o.observed_at < k.hour + interval '1 hour'
   and o.value is not null
 where k.hour >= %(lo)s and k.hour < %(hi)s
   and o.observed_at >= %(lo)s and o.observed_at < %(hi)s
 group by k.member_id, k.code, k.hour
"""

_DAILY = """
insert into rollup_days select distinct member_id, code, time_bucket('1 day', hour)
  from rollup_keys;
delete from analytics.rollup_daily r using rollup_days d
 where r.member_id = d.member_id and r.code = d.code and r.bucket = d.day;
insert into analytics.rollup_daily
    (member_id, code, bucket, n, sum, sumsq, min, max, last, last_at, minutes, unit)
select d.member_id, d.code, d.day, a.*
  from rollup_days d
 cross join lateral (
    select sum(h.n)::bigint as n, sum(h.sum), sum(h.sumsq), min(h.min), max(h.max),
           (array_agg(h.last order by h.last_at desc, h.last desc))[1], max(h.last_at),
           sum(h.minutes)::integer, min(h.unit)
      from analytics.rollup_hourly h
     where h.member_id = d.member_id and h.code = d.code
       and h.bucket >= d.day and h.bucket < d.day + interval '1 day'
 ) a
 where a.n > 0;
"""

# The member-days to rebuild: every day a key touched; for sleep also the next day (a
# night belongs to the UTC day it ends, at most a day after it starts). Only the days a
# sleep key touched have their sleep recomputed; the others keep theirs.
_MEMBER_DAYS_SETUP = """
insert into rollup_member_days
select distinct member_id, (day at time zone 'UTC')::date from rollup_days
union
select distinct member_id, (day at time zone 'UTC')::date + 1 from rollup_days
 where code = %(sleep)s;
insert into rollup_sleep_days
select distinct member_id, (day at time zone 'UTC')::date + s from rollup_days,
       generate_series(0, 1) s
 where code = %(sleep)s;
insert into rollup_kept_sleep
select m.member_id, m.day, m.sleep_minutes, m.sleep_efficiency
  from analytics.member_daily m join rollup_member_days d using (member_id, day)
 where not exists (select 1 from rollup_sleep_days s
                    where s.member_id = m.member_id and s.day = m.day);
delete from analytics.member_daily m using rollup_member_days d
 where m.member_id = d.member_id and m.day = d.day;
"""

# One chunk's share of the nights ending on each sleep day, per source (summed over
# chunks after).
_SLEEP_CHUNK = """
insert into rollup_sleep
select d.member_id, d.day, a.*
  from rollup_sleep_days d
 cross join lateral (
    select o.source,
           sum(o.value) filter (where o.qualifier like 'asleep%%'),
           sum(o.value) filter (where o.qualifier = 'awake'),
           sum(o.value) filter (where o.qualifier = 'in_bed')
      from {chunk} o
     where o.member_id = d.member_id and o.code = %(sleep)s
       and coalesce(o.ended_at, o.observed_at) >= d.day::timestamp at time zone 'UTC'
       and coalesce(o.ended_at, o.observed_at) < (d.day + 1)::timestamp at time zone 'UTC'
       and o.observed_at >= (d.day - 1)::timestamp at time zone 'UTC'
     group by o.source
 ) a
 where (d.day - 1)::timestamp at time zone 'UTC' < %(hi)s
   and (d.day + 1)::timestamp at time zone 'UTC' > %(lo)s
"""

_MEMBER_DAYS = """
insert into analytics.member_daily
    (member_id, day, event_ts, sleep_minutes, sleep_efficiency, steps, active_minutes,
     resting_hr, hrv_ms, body_weight_kg, bp_systolic, bp_diastolic, wear_minutes)
select d.member_id, d.day, (d.day + 1)::timestamp at time zone 'UTC',
       coalesce(s.asleep, k.minutes), coalesce(s.efficiency, k.efficiency),
       r.steps, r.active, r.rhr, r.hrv, r.weight, r.sys, r.dia, coalesce(r.wear, 0)
  from rollup_member_days d
 cross join lateral (
    select count(*) as codes,
           coalesce(max(r.sum) filter (where r.code = %(steps)s),
                    max(r.sum) filter (where r.code = %(steps_daily)s)) as steps,
           max(r.sum) filter (where r.code = %(workout)s) as active,
           max(r.sum / r.n) filter (where r.code = %(rhr)s) as rhr,
           max(r.sum / r.n) filter (where r.code = %(hrv)s) as hrv,
           max(r.last) filter (where r.code = %(weight)s) as weight,
           max(r.sum / r.n) filter (where r.code = %(sys)s) as sys,
           max(r.sum / r.n) filter (where r.code = %(dia)s) as dia,
           max(r.minutes) filter (where r.code = %(hr)s) as wear
      from analytics.rollup_daily r
     where r.member_id = d.member_id and r.bucket = d.day::timestamp at time zone 'UTC'
 ) r
  left join (
    -- Sources that recorded the same night (a watch's stages, a phone app's sleep
    -- episode) are alternatives, not parts: the night is the one source that saw the most
    -- sleep (ties: by name, so a recomputation picks the same), never their sum.
    select distinct on (member_id, day) member_id, day, asleep, efficiency
      from (
        select member_id, day, source, nullif(sum(asleep), 0) as asleep,
               -- (LEAST ignores NULLs: without the CASE a night-less day would be 100 percent)
               case when sum(asleep) > 0 then
                   least(1.0, sum(asleep) / coalesce(nullif(sum(in_bed), 0),
                                                     sum(asleep) + coalesce(sum(awake), 0)))
               end as efficiency
          from rollup_sleep group by member_id, day, source
      ) per_source
     order by member_id, day, asleep desc nulls last, source
  ) s on s.member_id = d.member_id and s.day = d.day
  left join rollup_kept_sleep k on k.member_id = d.member_id and k.day = d.day
 where r.codes > 0 or coalesce(s.asleep, k.minutes) is not null;
insert into analytics.feature_dirty (member_id, day)
select member_id, day from rollup_member_days;
"""

_CODES = {
    "steps": STEPS[0],
    "steps_daily": STEPS[1],
    "workout": WORKOUT,
    "rhr": RESTING_HR,
    "hrv": HRV,
    "weight": WEIGHT,
    "sys": SYSTOLIC,
    "dia": DIASTOLIC,
    "hr": HEART_RATE,
    "sleep": SLEEP_STAGE,
}


def refresh(conn: psycopg.Connection, limit: int = 20_000) -> Refreshed:
    """Claim up to `limit` queued keys and bring their rollups up to date, in one
    transaction. `conn` must not be in a transaction (autocommit off is fine)."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        # Inside another transaction this would be a savepoint: nothing committed, the
        # claim held, the temp tables never emptied.
        raise ValueError("refresh needs a connection outside any transaction")
    t0 = time.perf_counter()
    with conn.transaction():
        # Also where the server's default is on (an external database): JIT compiled a
        # one-key refresh for 20 s here, for statements that run in milliseconds.
        conn.execute("set local jit = off")
        for statement in _SETUP.split(";"):
            if statement.strip():
                conn.execute(statement)
        keys = conn.execute(_CLAIM, {"limit": limit}).rowcount
        steps = {"claim": time.perf_counter() - t0}
        if keys:
            conn.execute("analyze rollup_keys")
            conn.execute(_HOURLY_DELETE)
            _per_chunk(conn, "rollup_keys", "hour", "1 hour", _HOURLY_CHUNK, {})
            steps["hourly"] = time.perf_counter() - t0 - sum(steps.values())
            _run(conn, _DAILY, {})
            steps["daily"] = time.perf_counter() - t0 - sum(steps.values())
            _run(conn, _MEMBER_DAYS_SETUP, _CODES)
            _per_chunk(
                conn,
                "rollup_sleep_days",
                "day",
                "2 days",
                _SLEEP_CHUNK,
                _CODES,
                shift="(k.day - 1)::timestamp at time zone 'UTC'",
            )
            _run(conn, _MEMBER_DAYS, _CODES)
            steps["member_days"] = time.perf_counter() - t0 - sum(steps.values())
        days = _count(conn, "rollup_days")
        member_days = _count(conn, "rollup_member_days")
    return Refreshed(keys, days, member_days, time.perf_counter() - t0, steps)


def refresh_all(conn: psycopg.Connection, limit: int = 20_000) -> list[Refreshed]:
    """Refresh until the queue is empty (what was queued before the call; keys queued
    meanwhile are taken too)."""
    rounds = []
    while (r := refresh(conn, limit)).keys:
        rounds.append(r)
    return rounds


def backlog(conn: psycopg.Connection) -> tuple[int, float | None]:
    """Queued keys and the age in seconds of the oldest (None when empty)."""
    with conn.transaction():
        row = conn.execute(
            "select count(*), extract(epoch from now() - min(queued_at))::float8"
            " from analytics.rollup_dirty"
        ).fetchone()
    return (int(row[0]), row[1]) if row else (0, None)


def _per_chunk(
    conn: psycopg.Connection,
    keys: str,
    col: str,
    reach: str,
    statement: str,
    params: dict[str, str],
    shift: str | None = None,
) -> None:
    """Run `statement` once per observations chunk that rows of temp table `keys`
    (starting at `col`, or at the expression `shift`, and `reach` long) fall in, with
    `{chunk}` the chunk and [lo, hi) its range."""
    start = sql.SQL(shift) if shift else sql.SQL("k.") + sql.Identifier(col)
    query = sql.SQL(_CHUNKS).format(
        keys=sql.Identifier(keys), start=start, reach=sql.Literal(reach)
    )
    for schema, name, lo, hi in conn.execute(query).fetchall():
        conn.execute(
            sql.SQL(statement).format(chunk=sql.Identifier(schema, name)),
            {**params, "lo": lo, "hi": hi},
        )


def _run(conn: psycopg.Connection, script: str, params: dict[str, str]) -> None:
    for statement in script.split(";\n"):
        if statement.strip():
            conn.execute(statement, params or None)


def _count(conn: psycopg.Connection, table: str) -> int:
    # Temp tables of this session; names are ours.
    row = conn.execute(f"select count(*) from {table}").fetchone()  # noqa: S608
    return int(row[0]) if row else 0
