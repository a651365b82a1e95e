"""Governed-path benchmark: what identity, Casbin, consent in the SQL and the audit cost.

A coach's timeline query (one day of a member's minute-level heart rate, in hourly
buckets: read from the analytics zone's rollups, as the backend does for whole buckets)
goes through the running backend over HTTPS as real Hub users, and the same
library call (`timeline.visible_timeline`: the same SQL, the same object rules) runs
directly on a pooled connection: p50/p95/p99 at 1, 8 and 32 concurrent clients, closed
loop. The physical floor is measured beside them at each level: an HTTPS round trip to
the same backend (`/healthz`), which every governed request pays before it does anything.
Besides: one Casbin decision, and one audit record written through
`governance.audit_append`: alone, and from 32 writers grouped into shared transactions
as the backend does (backend/governance/audit_writer.py).

    .venv/bin/python bench/governed.py [--seconds 10] [--quick] [--population 2000]
    .venv/bin/python bench/governed.py --days 90 --bucket day [--members 8]

`--days 90 --bucket day`: the coach's long view, 90 days of minute-level heart rate in
daily buckets (90 points, from the daily rollups); the members' data are shared by the
coaches (`--members`, each coach assigned to one of them) to keep the set-up short.
Results go to bench/results/governed.json (the default scenario) or
governed-<days>d-<bucket>.json.

`--population` other members with coaching and study consent share the database (added
once, kept between runs): consent rules that read everyone's consent, not just the
member's, show up only with a realistic population.

Needs the local stack (`make up`); the backend runs REJUVE_BACKEND_WORKERS processes
(default: one per core). Prints a table, writes bench/results/governed.json, with the
machine's load average before and after (other work on the machine skews every figure).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import secrets
import ssl
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import machine
from psycopg_pool import ConnectionPool
from rich.console import Console
from rich.table import Table

from backend.analytics import rollups
from backend.api.governance_state import query_pool
from backend.cli.service_cmds import backend_workers
from backend.governance import audit, consent
from backend.governance.audit_writer import AuditWriter
from backend.governance.policy import Policy, seed_defaults
from backend.identity import hub_auth
from backend.identity.hub_client import login_token
from backend.query import timeline as tl
from backend.query.viewer import Viewer
from backend.stack.context import StackContext

RESULTS = Path(__file__).resolve().parent / "results"
DAY = dt.datetime(2026, 1, 15, tzinfo=dt.UTC)
COACHES = 32  # one identity per client at most: the per-identity rate limit stays out of it
LEVELS = (1, 8, 32)


@dataclass(frozen=True)
class Scenario:
    """The query every client makes: `days` days of minute-level heart rate ending on DAY,
    in `bucket`s."""

    days: int = 1
    bucket: tl.Bucket = "hour"

    @property
    def start(self) -> dt.datetime:
        return DAY - dt.timedelta(days=self.days - 1)

    @property
    def end(self) -> dt.datetime:
        return DAY + dt.timedelta(days=1)

    @property
    def points(self) -> int:
        return self.days * {"hour": 24, "day": 1}[self.bucket]

    def describe(self) -> str:
        return f"{self.days} day(s), {self.bucket}ly buckets".replace("dayly", "daily")


@dataclass
class Fixture:
    coaches: list[str]
    members: list[uuid.UUID]  # coach i's member is members[i % len(members)]
    tokens: list[str]
    password: str

    def member(self, coach: int) -> uuid.UUID:
        return self.members[coach % len(self.members)]


def setup(ctx: StackContext, console: Console, scenario: Scenario, n_members: int) -> Fixture:
    """Coaches, each assigned one of `n_members` members who consent to coaching, with the
    scenario's days of minute-level heart rate; Hub accounts and tokens for the coaches."""
    tag = secrets.token_hex(3)
    coaches = [f"bench-{tag}-{i}" for i in range(COACHES)]
    members = [uuid.uuid4() for _ in range(min(n_members, COACHES))]
    password = secrets.token_urlsafe(16)
    with ctx.db.connect("owner") as conn, conn.cursor() as cur:
        for member in members:
            cur.execute(
                "insert into governance.members (member_id, home_region) values (%s, %s)",
                (member, ctx.settings.region),
            )
        for i, coach in enumerate(coaches):
            cur.execute(
                "insert into governance.coach_assignments (coach, member_id) values (%s, %s)",
                (coach, members[i % len(members)]),
            )
        with cur.copy(
            "copy processed.observations (member_id, observed_at, code, value, unit, source,"
            " raw_record_id, raw_received_at) from stdin"
        ) as copy:
            now = dt.datetime.now(dt.UTC)
            for member in members:
                for minute in range(scenario.days * 24 * 60):
                    copy.write_row(
                        (
                            member,
                            scenario.start + dt.timedelta(minutes=minute),
                            "8867-4",
                            60 + minute % 40,
                            "/min",
                            "bench",
                            uuid.uuid4(),
                            now,
                        )
                    )
        # As the refiner would: the rollup keys of what went in, for the `rollups` service.
        for member in members:
            rollups.queue_all(conn, member)
    with ctx.db.connect("backend") as conn:
        consent.grant_all(
            conn, members, "coaching", ["wearables"], consent_version="bench", recorded_by="bench"
        )
    with (
        console.status("the rollups service building the rollups"),
        ctx.db.connect("query", autocommit=True) as conn,
    ):
        while rollups.backlog(conn)[0]:
            time.sleep(0.2)
    tokens = []
    with console.status("Hub accounts and tokens for the coaches"):
        for coach in coaches:
            hub_auth.add_user(ctx.hub.user_store, coach, password, ["coach"], rounds=4)
            tokens.append(login_token(ctx.hub.url, ctx.layout.ca_cert, coach, password, "bench"))
    return Fixture(coaches, members, tokens, password)


POPULATION_TAG = "bench-population"


def populate(ctx: StackContext, population: int) -> int:
    """Other members, each with coaching and study consent for every category, up to
    `population` (tagged by their consent version); returns how many exist."""
    with ctx.db.connect("owner") as conn:
        row = conn.execute(
            "select count(distinct member_id) from governance.consent_events"
            " where consent_version = %s",
            (POPULATION_TAG,),
        ).fetchone()
        have = int(row[0]) if row else 0
        if have < population:
            conn.execute(
                "with m as (insert into governance.members (member_id, home_region)"
                "  select gen_random_uuid(), %(region)s from generate_series(1, %(n)s)"
                "  returning member_id)"
                " insert into governance.consent_events (member_id, purpose, category, action,"
                "  consent_version, recorded_by, evidence)"
                " select m.member_id, p.purpose, c.category, 'grant', %(tag)s, %(tag)s, '{}'"
                " from m cross join unnest(array['coaching', 'study:bench']) p(purpose)"
                " cross join unnest(%(categories)s::text[]) c(category)",
                {
                    "region": ctx.settings.region,
                    "n": population - have,
                    "tag": POPULATION_TAG,
                    "categories": list(consent.CATEGORIES),
                },
            )
            conn.execute("analyze governance.consent_events")
    return max(have, population)


def teardown(ctx: StackContext, f: Fixture) -> None:
    for coach in f.coaches:
        hub_auth.remove_user(ctx.hub.user_store, coach)


def percentiles(samples: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "n": len(samples),
        "p50_ms": qs[49] * 1000,
        "p95_ms": qs[94] * 1000,
        "p99_ms": qs[98] * 1000,
        "per_s": 0.0,
    }


def closed_loop(
    clients: int, seconds: float, make_call: Callable[[int], Callable[[int], None]]
) -> dict[str, float]:
    """`clients` threads, each calling its own callable back to back for `seconds`; the
    argument is a running request number (to rotate identities)."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = itertools.count()
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        call = make_call(i)
        mine = []
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            call(next(counter))
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    result = percentiles(latencies)
    result["per_s"] = len(latencies) / (time.perf_counter() - t0)
    return result


def governed_calls(
    ctx: StackContext, f: Fixture, scenario: Scenario
) -> Callable[[int], Callable[[int], None]]:
    tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
    params = {
        "start": scenario.start.isoformat(),
        "end": scenario.end.isoformat(),
        "bucket": scenario.bucket,
    }

    def make(_: int) -> Callable[[int], None]:
        client = httpx.Client(base_url=ctx.backend_url, verify=tls, timeout=60)

        def call(n: int) -> None:
            k = n % len(f.coaches)
            r = client.get(
                f"/v1/members/{f.member(k)}/timeline",
                params=params,
                headers={"Authorization": f"token {f.tokens[k]}"},
            )
            if r.status_code != 200 or len(r.json()["points"]) != scenario.points:
                raise RuntimeError(f"governed request failed: {r.status_code} {r.text[:200]}")

        return call

    return make


def https_floor_calls(ctx: StackContext) -> Callable[[int], Callable[[int], None]]:
    """The physical floor of any request to the backend: one HTTPS round trip to the same
    server over a kept-alive connection, with no identity, policy, query or audit."""
    tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))

    def make(_: int) -> Callable[[int], None]:
        client = httpx.Client(base_url=ctx.backend_url, verify=tls, timeout=60)

        def call(_: int) -> None:
            if client.get("/healthz").status_code != 200:
                raise RuntimeError("healthz failed")

        return call

    return make


def direct_calls(
    pool: ConnectionPool, f: Fixture, region: str, scenario: Scenario
) -> Callable[[int], Callable[[int], None]]:
    def make(_: int) -> Callable[[int], None]:
        def call(n: int) -> None:
            k = n % len(f.coaches)
            viewer = Viewer(f.coaches[k], frozenset({"coach"}), region)
            with pool.connection() as conn:
                points = tl.visible_timeline(
                    conn,
                    viewer,
                    f.member(k),
                    start=scenario.start,
                    end=scenario.end,
                    bucket=scenario.bucket,
                    limit=1000,
                )
            if points is None:
                raise RuntimeError("direct: not visible")
            if len(points) != scenario.points:
                raise RuntimeError(f"direct: {len(points)} points")

        return call

    return make


def casbin_cost(ctx: StackContext, n: int) -> dict[str, float]:
    policy = Policy.open(ctx.db.sqlalchemy_url("backend"))
    try:
        seed_defaults(policy)
        roles = frozenset({"coach"})
        region = ctx.settings.region
        out = {}
        # First decisions (each resource new: pycasbin evaluates its matcher per rule) and
        # remembered ones (the memo Policy keeps until the next reload).
        for label, resource, expected in (
            ("first_allowed", "members/{i}/timeline", True),
            ("first_denied", "studies/s-{i}/dataset", False),
            ("remembered", "members/m-1/timeline", True),
        ):
            t0 = time.perf_counter()
            for i in range(n):
                got = policy.allowed("bench-coach", roles, region, resource.format(i=i), "read")
                if got != expected:
                    raise RuntimeError(f"casbin gave the wrong answer for {resource}")
            out[f"{label}_us"] = (time.perf_counter() - t0) / n * 1e6
        return out
    finally:
        policy.close()


def audit_cost(ctx: StackContext, seconds: float, writers: int) -> dict[str, float]:
    def event(i: int) -> audit.AuditEvent:
        return audit.AuditEvent(
            actor="bench",
            role="coach",
            purpose="coaching",
            study=None,
            action="bench.audit",
            resource=f"members/{uuid.uuid4()}/timeline",
            outcome="allowed",
            params={"start": DAY.isoformat(), "bucket": "hour", "i": i},
            row_count=24,
            status=200,
            latency_ms=1.0,
            client="127.0.0.1",
            request_id=uuid.uuid4(),
        )

    with ConnectionPool(ctx.db.conninfo("backend"), min_size=1, max_size=writers) as pool:
        if writers == 1:
            # One record per transaction: what a lone request pays.
            def make(_: int) -> Callable[[int], None]:
                def call(i: int) -> None:
                    with pool.connection() as conn:
                        audit.append(conn, event(i))

                return call

            return closed_loop(1, seconds, make)
        # Concurrent requests, as the backend writes them: grouped by AuditWriter.
        writer = AuditWriter(pool.connection)
        try:

            def make_writer(_: int) -> Callable[[int], None]:
                def call(i: int) -> None:
                    writer.write(event(i))

                return call

            return closed_loop(writers, seconds, make_writer)
        finally:
            writer.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10, help="per path and concurrency")
    ap.add_argument("--quick", action="store_true", help="2 s per cell, for a smoke run")
    ap.add_argument(
        "--population", type=int, default=2000, help="other consenting members in the database"
    )
    ap.add_argument("--days", type=int, default=1, help="days of minute-level data queried")
    ap.add_argument("--bucket", choices=("hour", "day"), default="hour")
    ap.add_argument(
        "--members", type=int, default=COACHES, help="members whose data the coaches share"
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds = 2
    scenario = Scenario(args.days, args.bucket)
    console = Console()
    ctx = StackContext.from_env()
    load_before = os.getloadavg()
    with console.status(f"a population of {args.population} consenting members"):
        population = populate(ctx, args.population)
    f = setup(ctx, console, scenario, args.members)
    runs: dict[str, dict[str, dict[str, float]]] = {"governed": {}, "direct": {}, "https": {}}
    try:
        # The backend's own pool configuration, so the SQL runs the same way on both paths.
        with query_pool(ctx.db, max_size=max(LEVELS)) as pool:
            direct = direct_calls(pool, f, ctx.settings.region, scenario)
            governed = governed_calls(ctx, f, scenario)
            https = https_floor_calls(ctx)
            # Warm both paths (token cache, connections, plans) before measuring.
            closed_loop(4, 1.0, governed)
            closed_loop(4, 1.0, direct)
            for clients in LEVELS:
                for path, calls in (("direct", direct), ("https", https), ("governed", governed)):
                    with console.status(f"{path}: {clients} client(s) for {args.seconds:g} s"):
                        runs[path][str(clients)] = closed_loop(clients, args.seconds, calls)
        with console.status("Casbin decisions"):
            casbin = casbin_cost(ctx, 5_000)
        with console.status("audit writes"):
            audit_one = audit_cost(ctx, args.seconds, 1)
            audit_many = audit_cost(ctx, args.seconds, 32)
    finally:
        teardown(ctx, f)

    table = Table(
        title=f"Governed path: coach timeline ({scenario.describe()})", title_justify="left"
    )
    for col in ("clients", "path", "p50 ms", "p95 ms", "p99 ms", "req/s", "p95 ratio"):
        table.add_column(col, justify="right" if col != "path" else "left")
    for level in map(str, LEVELS):
        d, g = runs["direct"][level], runs["governed"][level]
        for path, r in (
            ("direct SQL", d),
            ("HTTPS round trip (/healthz)", runs["https"][level]),
            ("governed HTTPS", g),
        ):
            ratio = f"{g['p95_ms'] / d['p95_ms']:.2f}" if r is g else ""
            table.add_row(
                level,
                path,
                f"{r['p50_ms']:.1f}",
                f"{r['p95_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                f"{r['per_s']:,.0f}",
                ratio,
            )
    console.print(table)
    costs = Table(title="Unit costs", title_justify="left")
    costs.add_column("measure")
    costs.add_column("value", justify="right")
    costs.add_row(
        "Casbin decision, first allowed / first denied / remembered",
        f"{casbin['first_allowed_us']:.0f} / {casbin['first_denied_us']:.0f}"
        f" / {casbin['remembered_us']:.0f} µs",
    )
    for label, r in (("1 writer", audit_one), ("32 writers, grouped", audit_many)):
        costs.add_row(
            f"audit record, {label}: p50 / p95",
            f"{r['p50_ms']:.2f} / {r['p95_ms']:.2f} ms ({r['per_s']:,.0f}/s)",
        )
    console.print(costs)
    workers = backend_workers(ctx.settings.backend_workers)
    console.print(
        f"backend workers: {workers};"
        f" load average before / after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f}"
    )
    RESULTS.mkdir(exist_ok=True)
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "machine": machine.described(load_before),
        "backend_workers": workers,
        "query": f"coach timeline, minute-level heart rate, {scenario.describe()}"
        f" ({scenario.points} points)",
        "population": population,
        "runs": runs,
        "p95_ratio": {
            c: runs["governed"][c]["p95_ms"] / runs["direct"][c]["p95_ms"] for c in runs["direct"]
        },
        # What governance adds at the median, past the query itself.
        "p50_overhead_ms": {
            c: runs["governed"][c]["p50_ms"] - runs["direct"][c]["p50_ms"] for c in runs["direct"]
        },
        "casbin_decision_us": casbin,
        "audit_write": {"writers_1": audit_one, "writers_32_grouped": audit_many},
        "args": vars(args),
    }
    default = scenario == Scenario()
    out = RESULTS / ("governed.json" if default else f"governed-{args.days}d-{args.bucket}.json")
    out.write_text(json.dumps(result, indent=2))
    console.print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
