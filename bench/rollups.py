"""Rollup refresh benchmark: what one hour of traffic costs the analytics zone, next to
the range recomputation a continuous aggregate would do for the same invalidations.

In a scratch database of the running stack (dropped afterwards):
1. history: `--history-days` of `--history-per-day` heart-rate readings per member-day
   (24: hourly; a watch's minute-level data would be 1,440 and make the reference 60x
   dearer), rolled up;
2. one hour of traffic for `--members` members (one heart-rate reading a minute each)
   plus `--late` of that hour's rows again as late data from up to 90 days back, each
   batch through the refiner's own insert (rows in, keys queued, one statement);
3. measured: our refresh of the queued (member, code, hour) keys, then the reference:
   every hourly and daily bucket of every member in the invalidated time range
   recomputed, which is what a range invalidation (TimescaleDB's continuous aggregates,
   timescale/timescaledb#8132) makes a refresh do when one row is 90 days late.

    .venv/bin/python bench/rollups.py [--members 100000] [--history-days 90] [--quick]

Prints a table and writes bench/results/rollups.json (target: ours <= 0.05x the range)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import time
import uuid
from pathlib import Path

import machine
import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from backend.analytics import rollups
from backend.db import migrate
from backend.runtime import Runtime
from tests.conftest import create_scratch_database, drop_scratch_database

RESULTS = Path(__file__).resolve().parent / "results"
HOUR = dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)
HR = rollups.HEART_RATE
_COLS = (
    "member_id, observed_at, code, value, unit, source, dedup_key, raw_record_id, raw_received_at"
)
SLICE = 200_000  # rows per "batch" transaction


def _key(member: uuid.UUID, at: dt.datetime, n: int) -> bytes:
    return member.bytes + int(at.timestamp()).to_bytes(8, "big") + n.to_bytes(4, "big")


def history(conn: psycopg.Connection, members: list[uuid.UUID], days: int, per_day: int) -> int:
    """`per_day` heart-rate readings a day per member for `days` days (generated in the
    server), and their rollups built set-wise."""
    start = HOUR - dt.timedelta(days=days)
    step = dt.timedelta(days=1) / per_day
    n = conn.execute(
        "insert into processed.observations (member_id, observed_at, code, value, unit, source,"
        " dedup_key, raw_record_id, raw_received_at)"
        " select m, t, %(code)s, 60 + (extract(epoch from t)::bigint / 60) %% 40, '/min',"
        " 'bench', decode(md5(m::text || t::text), 'hex'), gen_random_uuid(), t"
        " from unnest(%(members)s::uuid[]) m,"
        " generate_series(%(start)s::timestamptz, %(end)s::timestamptz, %(step)s) t",
        {
            "code": HR,
            "members": members,
            "start": start,
            "end": HOUR - step,
            "step": step,
        },
    ).rowcount
    conn.commit()
    _recompute_range(conn, start, HOUR)
    conn.commit()
    return n


def hour_of_traffic(
    conn: psycopg.Connection, members: list[uuid.UUID], late: float, rng: random.Random
) -> tuple[int, int, float]:
    """A minute's reading per member through the hour, and `late` of as many rows again
    from up to 90 days back; each slice one refiner-style transaction. Returns (rows
    inserted, keys queued, seconds)."""
    rows: list[tuple[object, ...]] = []
    for m in members:
        for minute in range(60):
            at = HOUR + dt.timedelta(minutes=minute)
            rows.append(
                (m, at, HR, 60.0 + minute % 40, "/min", "bench", _key(m, at, 1), uuid.uuid4(), at)
            )
    for _ in range(int(len(rows) * late)):
        m = members[rng.randrange(len(members))]
        at = HOUR - dt.timedelta(minutes=rng.randrange(1, 90 * 24 * 60))
        rows.append((m, at, HR, 90.0, "/min", "bench", _key(m, at, 2), uuid.uuid4(), HOUR))
    rng.shuffle(rows)  # late rows arrive mixed in with the hour's
    inserted = queued = 0
    t0 = time.perf_counter()
    conn.execute("create temp table stage (like processed.observations including defaults)")
    for i in range(0, len(rows), SLICE):
        with conn.transaction():
            with conn.cursor().copy(f"copy stage ({_COLS}) from stdin") as copy:
                for row in rows[i : i + SLICE]:
                    copy.write_row(row)
            got = rollups.insert_staged(conn, "stage", sql.SQL(_COLS))
            conn.execute("truncate stage")
        inserted += got[0]
        queued += got[1]
    conn.commit()
    return inserted, queued, time.perf_counter() - t0


def _recompute_range(conn: psycopg.Connection, start: dt.datetime, end: dt.datetime) -> None:
    """Every member's hourly and daily buckets in [start, end) from scratch, set-wise: a
    range refresh."""
    day0 = start.replace(hour=0, minute=0, second=0, microsecond=0)
    conn.execute("set local jit = off")
    conn.execute(
        "delete from analytics.rollup_hourly where bucket >= %s and bucket < %s", (start, end)
    )
    conn.execute(
        "insert into analytics.rollup_hourly (member_id, code, bucket, n, sum, sumsq, min, max,"
        " last, last_at, minutes, unit)"
        " select member_id, code, time_bucket('1 hour', observed_at) b, count(*), sum(value),"
        " sum(value * value), min(value), max(value),"
        " (array_agg(value order by observed_at desc, value desc))[1], max(observed_at),"
        " count(distinct date_trunc('minute', observed_at)), min(unit)"
        " from processed.observations where observed_at >= %s and observed_at < %s"
        " group by 1, 2, 3",
        (start, end),
    )
    conn.execute(
        "delete from analytics.rollup_daily where bucket >= %s and bucket < %s", (day0, end)
    )
    conn.execute(
        "insert into analytics.rollup_daily (member_id, code, bucket, n, sum, sumsq, min, max,"
        " last, last_at, minutes, unit)"
        " select member_id, code, time_bucket('1 day', bucket) d, sum(n), sum(sum), sum(sumsq),"
        " min(min), max(max), (array_agg(last order by last_at desc, last desc))[1],"
        " max(last_at), sum(minutes), min(unit)"
        " from analytics.rollup_hourly where bucket >= %s and bucket < %s group by 1, 2, 3",
        (day0, end),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--history-days", type=int, default=90)
    ap.add_argument(
        "--history-per-day", type=int, default=24, help="readings a member-day in the history"
    )
    ap.add_argument("--late", type=float, default=0.01, help="late rows, as a share of the hour's")
    ap.add_argument("--quick", action="store_true", help="5,000 members, 30 days: a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.members, args.history_days = 5_000, 30
    console = Console()
    ctx = Runtime.from_env()
    load_before = os.getloadavg()
    rng = random.Random(7)  # noqa: S311 (synthetic data, nothing secret)
    members = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(args.members)]
    access = create_scratch_database(ctx)
    try:
        migrate.upgrade(access)
        with access.connect("owner") as conn:
            conn.execute("set jit = off")
            with console.status(f"history: {args.history_days} days of {args.members:,} members"):
                t0 = time.perf_counter()
                hist_rows = history(conn, members, args.history_days, args.history_per_day)
                hist_s = time.perf_counter() - t0
            with console.status("an hour of traffic, with late rows, through the refiner's insert"):
                inserted, queued, ingest_s = hour_of_traffic(conn, members, args.late, rng)
            with console.status("our refresh of the queued keys"):
                rounds = rollups.refresh_all(conn)
                ours_s = sum(r.seconds for r in rounds)
            oldest = conn.execute(
                "select min(bucket) from analytics.rollup_hourly where bucket < %s", (HOUR,)
            ).fetchone()
            start = min(HOUR - dt.timedelta(days=90), oldest[0] if oldest and oldest[0] else HOUR)
            with console.status("reference: the invalidated range recomputed"):
                t0 = time.perf_counter()
                with conn.transaction():
                    _recompute_range(conn, start, HOUR + dt.timedelta(hours=1))
                range_s = time.perf_counter() - t0
    finally:
        drop_scratch_database(ctx, access)
    keys = sum(r.keys for r in rounds)
    steps: dict[str, float] = {}
    for r in rounds:
        for step, seconds in r.steps.items():
            steps[step] = steps.get(step, 0.0) + seconds
    table = Table(title="Rollup refresh after one hour of traffic", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("members", f"{args.members:,}")
    table.add_row("history rows (loaded and rolled up)", f"{hist_rows:,} in {hist_s:.1f} s")
    table.add_row("hour's rows inserted (incl. late)", f"{inserted:,} in {ingest_s:.1f} s")
    table.add_row("keys queued / refreshed", f"{queued:,} / {keys:,}")
    table.add_row("our refresh", f"{ours_s:.2f} s ({keys / ours_s:,.0f} keys/s)")
    table.add_row(
        "  of which " + ", ".join(steps), " / ".join(f"{v:.2f}" for v in steps.values()) + " s"
    )
    table.add_row("reference: range recomputation (90 days, every member)", f"{range_s:.2f} s")
    table.add_row("ratio ours / reference (target <= 0.05)", f"{ours_s / range_s:.3f}")
    console.print(table)
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "machine": machine.described(load_before),
        "args": vars(args),
        "history_rows": hist_rows,
        "hour_rows_inserted": inserted,
        "keys_queued": queued,
        "keys_refreshed": keys,
        "refresh_seconds": ours_s,
        "refresh_steps_seconds": steps,
        "refresh_rounds": len(rounds),
        "range_recompute_seconds": range_s,
        "ratio": ours_s / range_s,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "rollups.json"
    out.write_text(json.dumps(result, indent=2))
    load = f"{load_before[0]:.1f} / {os.getloadavg()[0]:.1f}"
    console.print(f"load average before / after: {load}; written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
