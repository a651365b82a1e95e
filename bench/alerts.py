"""Alert detection benchmark: sensitivity on injected episodes and false alarms per
member-week, on a synthetic cohort taken through the platform's own code.

In a scratch database of the running stack (dropped afterwards):
1. a cohort from the generator (`CohortSpec(episode_share=...)`: a share of the members
   get one episode of raised resting heart rate, lowered HRV or lost sleep; the ground
   truth is the manifest's `episodes`), its device batches and Open mHealth points parsed
   by the real parsers and normalised by the refiner's `normalise` (bad samples go where
   the refiner sends them: not in), inserted with the refiner's statement (duplicates
   dropped, rollup keys queued);
2. the rollups and member-day summaries built by `rollups.refresh_all`;
3. `alerts.detect` over every day of the cohort, as the `detect-alerts` flow does daily.

An episode is detected when an alert of one of the rules that should notice it
(`backend/synth/episodes.py: KINDS`) fires for that member from the day before it starts
to two days after it ends (its dates are the member's local dates, alerts' days are UTC).
A blood-pressure alert about a member the generator made hypertensive (mean systolic >= 140
or diastolic >= 90) is counted apart, as true; every other alert is a false alarm.
Member-weeks are the member-days evaluated / 7.

    .venv/bin/python bench/alerts.py [--members 60] [--days 63] [--share 0.5] [--quick]

Targets (issue 10): sensitivity >= 95 %. Prints a table, writes bench/results/alerts.json.
Left out to keep it a few minutes on a laptop: minute-level heart rate (every member on
5-minute sampling; no rule reads it) and Apple exports (they carry no episodes)."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import statistics
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from backend.analytics import rollups
from backend.coaching import alerts
from backend.db import migrate
from backend.ingest.formats.registry import get as get_format
from backend.ingest.model import ParseReport, Rejected
from backend.refine.normalise import Observation, normalise
from backend.refine.refiner import _OBS_COLUMNS, _OBS_TYPES
from backend.runtime import Runtime
from backend.synth import omh
from backend.synth.device import device_stream
from backend.synth.episodes import Episode, episodes
from backend.synth.fhir import bundle
from backend.synth.members import CohortSpec, Member, members
from tests.conftest import create_scratch_database, drop_scratch_database

RESULTS = Path(__file__).resolve().parent / "results"
# What the member-day summaries the rules read are made of.
KEEP = frozenset(
    {
        rollups.RESTING_HR,
        rollups.HRV,
        rollups.SLEEP_STAGE,
        rollups.SYSTOLIC,
        rollups.DIASTOLIC,
        rollups.WEIGHT,
    }
)


def _observations(spec: CohortSpec, member: Member, now: dt.datetime) -> list[Observation]:
    """The member's device batches and Open mHealth points, parsed and normalised as the
    refiner does (only the codes the summaries need)."""
    bodies = [body for body, info in device_stream(spec, member) if not info.resend]
    _, _, shared = bundle(spec, member)
    points, _ = omh.points(spec, member, shared)
    out: list[Observation] = []
    for fmt, data in [*(("device-batch", b) for b in bodies), ("omh", points)]:
        for item in get_format(fmt).parse(io.BytesIO(data), ParseReport(), name=fmt):
            if isinstance(item, Rejected) or item.code not in KEEP:
                continue
            result = normalise(item, member.member_id, now)
            if isinstance(result, Observation):
                out.append(result)
    return out


def load(conn: psycopg.Connection, rows: list[Observation]) -> int:
    """Insert with the refiner's statement (dedup, rollup keys queued); rows inserted."""
    received = dt.datetime.now(dt.UTC)
    with conn.transaction():
        conn.execute(
            "create temp table if not exists bench_stage"
            " (like processed.observations including defaults) on commit delete rows"
        )
        # The refiner's own column list and COPY types: rows go in as it writes them.
        cols = _OBS_COLUMNS
        with conn.cursor().copy(
            sql.SQL("COPY bench_stage ({}) FROM STDIN (FORMAT BINARY)").format(cols)
        ) as copy:
            copy.set_types(_OBS_TYPES)
            for o in rows:
                copy.write_row((*o[:10], o.dedup_key, uuid.uuid4(), received, None))
        inserted, _ = rollups.insert_staged(conn, "bench_stage", cols)
    return inserted


def score(
    found: list[tuple[uuid.UUID, str, dt.date]], truth: list[Episode]
) -> tuple[list[tuple[Episode, int | None]], list[tuple[uuid.UUID, str, dt.date]]]:
    """(each episode with the days from its start to its first matching alert, or None),
    and the false alarms."""
    by_member: dict[uuid.UUID, list[Episode]] = {}
    for e in truth:
        by_member.setdefault(e.member_id, []).append(e)

    def matches(e: Episode, rule: str, day: dt.date) -> bool:
        return rule in e.detected_by and e.start - dt.timedelta(
            days=1
        ) <= day <= e.end + dt.timedelta(days=2)

    outcome = []
    for e in truth:
        days = sorted(
            (d - e.start).days for m, r, d in found if m == e.member_id and matches(e, r, d)
        )
        outcome.append((e, days[0] if days else None))
    false = [
        (m, r, d) for m, r, d in found if not any(matches(e, r, d) for e in by_member.get(m, []))
    ]
    return outcome, false


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--members", type=int, default=60)
    ap.add_argument("--days", type=int, default=63)
    ap.add_argument("--share", type=float, default=0.5, help="members with an episode")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--quick", action="store_true", help="20 members, 42 days: a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.members, args.days = 20, 42
    console = Console()
    ctx = Runtime.from_env()
    now = dt.datetime.now(dt.UTC)
    # Ends at last midnight: nothing from the future (the normaliser refuses it).
    start = dt.datetime.combine(now.date(), dt.time(), dt.UTC) - dt.timedelta(days=args.days)
    spec = CohortSpec(
        members=args.members,
        days=args.days,
        seed=args.seed,
        start=start,
        five_minute_hr_share=1.0,
        apple_exports=0,
        episode_share=args.share,
    )
    cohort = members(spec)
    truth = [e for m in cohort for e in episodes(spec, m)]
    access = create_scratch_database(ctx)
    t_all = time.perf_counter()
    try:
        migrate.upgrade(access)
        with access.connect("owner") as conn:
            conn.execute("set jit = off")
            conn.commit()
            inserted = 0
            with console.status(f"{args.members} members x {args.days} days: parse, normalise"):
                t0 = time.perf_counter()
                for member in cohort:
                    inserted += load(conn, _observations(spec, member, now))
                load_s = time.perf_counter() - t0
            with console.status("rollups and member-day summaries"):
                t0 = time.perf_counter()
                rollups.refresh_all(conn)
                rollup_s = time.perf_counter() - t0
            with console.status("detection"):
                first, last = start.date(), (spec.end - dt.timedelta(days=1)).date()
                report = alerts.detect(conn, first, last)
            found = [
                (m, r, d)
                for m, r, d in conn.execute(
                    "select member_id, rule_id, day from analytics.alerts order by day"
                ).fetchall()
            ]
    finally:
        drop_scratch_database(ctx, access)
    # Members the generator made hypertensive (their mean pressure is above the cut-off):
    # a generic blood-pressure alert about them is true, though no episode caused it.
    chronic = {(m.member_id, "bp-high") for m in cohort if m.systolic >= 140} | {
        (m.member_id, "bp-diastolic-high") for m in cohort if m.diastolic >= 90
    }
    on_chronic = [f for f in found if (f[0], f[1]) in chronic]
    outcome, false = score([f for f in found if (f[0], f[1]) not in chronic], truth)
    detected = [d for _, d in outcome if d is not None]
    sensitivity = len(detected) / len(outcome) if outcome else float("nan")
    member_weeks = report.member_days / 7
    quiet = {m.member_id for m in cohort} - {e.member_id for e in truth}
    false_quiet = [f for f in false if f[0] in quiet]
    quiet_weeks = member_weeks * len(quiet) / len(cohort) if cohort else 0.0
    per_kind: dict[str, list[bool]] = {}
    for e, d in outcome:
        per_kind.setdefault(e.kind, []).append(d is not None)
    result: dict[str, Any] = {
        "members": args.members,
        "days": args.days,
        "episodes": len(outcome),
        "detected": len(detected),
        "sensitivity": round(sensitivity, 4),
        "sensitivity_by_kind": {k: f"{sum(v)}/{len(v)}" for k, v in sorted(per_kind.items())},
        "days_to_first_alert_median": statistics.median(detected) if detected else None,
        "alerts": len(found),
        "alerts_on_generated_hypertension": len(on_chronic),
        "false_alarms": len(false),
        "member_weeks": round(member_weeks, 1),
        "false_alarms_per_member_week": round(len(false) / member_weeks, 4)
        if member_weeks
        else None,
        "false_alarms_per_member_week_without_episode": round(len(false_quiet) / quiet_weeks, 4)
        if quiet_weeks
        else None,
        "false_alarms_by_rule": dict(sorted(Counter(r for _, r, _ in false).items())),
        "missed": [e.to_json() for e, d in outcome if d is None],
        "observations_inserted": inserted,
        "load_seconds": round(load_s, 1),
        "rollup_seconds": round(rollup_s, 1),
        "detect_seconds": round(report.seconds, 2),
        "total_seconds": round(time.perf_counter() - t_all, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    table = Table(title="Alert detection on injected episodes", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in (
        "members",
        "days",
        "episodes",
        "detected",
        "sensitivity",
        "sensitivity_by_kind",
        "days_to_first_alert_median",
        "alerts",
        "alerts_on_generated_hypertension",
        "false_alarms",
        "member_weeks",
        "false_alarms_per_member_week",
        "false_alarms_per_member_week_without_episode",
        "false_alarms_by_rule",
        "detect_seconds",
        "total_seconds",
    ):
        table.add_row(key, str(result[key]))
    console.print(table)
    console.print("target: sensitivity >= 0.95:", "met" if sensitivity >= 0.95 else "NOT met")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "alerts.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
