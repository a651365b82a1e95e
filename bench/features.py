"""Feature store benchmark, all figures from one run on the running stack:

- online features for one member: through the backend (HTTPS, Hub token, Casbin, consent
  in SQL, audit; `GET /v1/members/{id}/features`) next to the bare Feast SDK read
  (`get_online_features`, same service, same member): p50/p95/p99, sequential requests;
- materialisation (`backend.features.materialise`) of every queued member: rows/s and
  peak Python memory (tracemalloc);
- a point-in-time training set of `--rows` entity rows (`backend.query.training_set`, the
  route's library call, streaming from a server-side cursor) next to a pandas `merge_asof`
  reference on the same data (read from the same views): time and peak memory.

    .venv/bin/python bench/features.py [--members 2000] [--days 60] [--rows 100000]
                                        [--requests 500]

Members and their days are synthetic and kept (tagged `bench-features`), so later runs
reuse them. Prints a table, writes bench/results/features.json with the load average
(other work on the machine skews every figure).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import secrets
import ssl
import statistics
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from rich.console import Console
from rich.table import Table

from backend.features.environment import close_store, open_store
from backend.features.materialise import LOCK, materialise
from backend.governance import consent
from backend.identity import hub_auth
from backend.identity.hub_client import login_token
from backend.keys.study_keys import StudyKeys, pseudonym
from backend.query import training_set as ts
from backend.query.viewer import Viewer
from backend.stack.context import StackContext

RESULTS = Path(__file__).resolve().parent / "results"
END = dt.date(2026, 11, 1)
STUDY = "bench-features"


def _pct(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98], "n": len(samples)}


def _rss_peak_mib() -> float:
    """The process's peak resident memory so far (Python, Arrow and every other native
    allocation; tracemalloc sees only Python's)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, seconds, peak MiB of Python allocations)."""
    tracemalloc.start()
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, seconds, peak / 2**20


def _cohort(ctx: StackContext, n: int, days: int) -> list[uuid.UUID]:
    """`n` members with `days` member-days each (kept between runs), all queued."""
    with ctx.db.connect("owner") as conn:
        have = [
            r[0]
            for r in conn.execute(
                "select member_id from governance.members where hub_user is null"
                " and member_id in (select member_id from analytics.member_daily"
                "  where day = %s) order by member_id limit %s",
                (END, n),
            )
        ]
        missing = n - len(have)
        if missing > 0:
            new = [uuid.uuid4() for _ in range(missing)]
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into governance.members (member_id, home_region) values (%s, 'local')",
                    [(m,) for m in new],
                )
            conn.execute(
                """insert into analytics.member_daily (member_id, day, event_ts, computed_at,
                       steps, active_minutes, resting_hr, hrv_ms, sleep_minutes,
                       sleep_efficiency, wear_minutes)
                   select m, d::date, d + interval '1 day', now(), 2000 + random() * 15000,
                          random() * 90, 50 + random() * 30, 20 + random() * 60,
                          300 + random() * 200, 0.7 + random() * 0.3, 1000
                     from unnest(%s::uuid[]) m,
                          generate_series(%s::date - %s, %s::date, interval '1 day') d""",
                (new, END, days - 1, END),
            )
            have += new
        conn.execute(
            "insert into analytics.feature_dirty (member_id, day) select m, %s"
            " from unnest(%s::uuid[]) m",
            (END, have),
        )
        conn.commit()
    return have


def _online(ctx: StackContext, store: Any, member: uuid.UUID, requests: int) -> dict[str, Any]:
    tag = secrets.token_hex(3)
    coach, password = f"bench-coach-{tag}", "bench " + tag
    hub_auth.add_user(ctx.hub.user_store, coach, password, ["coach"], rounds=4)
    try:
        with ctx.db.connect("backend") as conn:
            conn.execute(
                "insert into governance.coach_assignments (coach, member_id) values (%s, %s)",
                (coach, member),
            )
            conn.commit()
            consent.grant_all(
                conn,
                [member],
                "coaching",
                ["wearables", "activity", "sleep", "labs"],
                consent_version="bench",
                recorded_by="bench",
            )
        token = login_token(ctx.hub.url, ctx.layout.ca_cert, coach, password, "bench")
        tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
        governed: list[float] = []
        floor: list[float] = []
        with httpx.Client(base_url=ctx.backend_url, verify=tls, timeout=30) as client:
            # The physical floor: an HTTPS round trip to the same backend, no work.
            for i in range(requests + 20):
                t = time.perf_counter()
                client.get("/healthz")
                if i >= 20:
                    floor.append((time.perf_counter() - t) * 1000)
            headers = {"Authorization": f"token {token}"}
            path = f"/v1/members/{member}/features"
            for i in range(requests + 20):
                t = time.perf_counter()
                r = client.get(path, headers=headers, params={"service": "coaching_overview"})
                elapsed = (time.perf_counter() - t) * 1000
                assert r.status_code == 200, r.text
                if i >= 20:  # warm-up: connections, caches
                    governed.append(elapsed)
                # Paced under the per-person rate limit (20/s): latency, not throughput.
                time.sleep(max(0.0, 0.06 - elapsed / 1000))
        svc = store.get_feature_service("coaching_overview")
        bare: list[float] = []
        for i in range(requests + 20):
            t = time.perf_counter()
            store.get_online_features(features=svc, entity_rows=[{"member_id": str(member)}])
            if i >= 20:
                bare.append((time.perf_counter() - t) * 1000)
    finally:
        hub_auth.remove_user(ctx.hub.user_store, coach)
    return {"governed_ms": _pct(governed), "bare_sdk_ms": _pct(bare), "https_floor_ms": _pct(floor)}


def _training(ctx: StackContext, store: Any, members: list[uuid.UUID], rows: int) -> dict[str, Any]:
    rng = random.Random(1)  # noqa: S311 (reproducible benchmark input)
    researcher = "bench-researcher"
    with ctx.db.connect("owner") as conn:
        conn.execute(
            "insert into governance.studies (study_id, title, created_by, access_level)"
            " values (%s, 'bench', 'bench', 'row-level') on conflict do nothing",
            (STUDY,),
        )
        conn.execute(
            "insert into governance.study_researchers values (%s, %s) on conflict do nothing",
            (STUDY, researcher),
        )
        asked = {
            r[0]
            for r in conn.execute(
                "select member_id from governance.consent_effective where purpose = %s",
                (consent.study_purpose(STUDY),),
            )
        }
        conn.commit()
    with ctx.db.connect("backend") as conn:
        consent.grant_all(
            conn,
            [m for m in members if m not in asked],
            consent.study_purpose(STUDY),
            ["wearables", "activity", "sleep"],
            consent_version="bench",
            recorded_by="bench",
        )
    key = StudyKeys(ctx.layout.keys / "studies", ctx.kms()).key(STUDY)
    start = dt.datetime.combine(END, dt.time(), dt.UTC) - dt.timedelta(days=50)
    entity = [
        (
            members[rng.randrange(len(members))],
            start + dt.timedelta(seconds=rng.randint(0, 50 * 86400)),
        )
        for _ in range(rows)
    ]
    request = [(pseudonym(key, m), at) for m, at in entity]
    specs = ts.specs_from_feast(store, "research_model", None)
    viewer = Viewer(researcher, frozenset({"researcher"}), "local")

    def ours() -> int:
        with ctx.db.connect("query") as conn:
            return sum(1 for _ in ts.training_set(conn, viewer, STUDY, key, specs, request))

    n_ours, t_ours, mem_ours = _peak(ours)

    def reference() -> int:
        with ctx.db.connect("owner") as conn:
            out = pd.DataFrame(
                {"member_id": [m for m, _ in entity], "at": [at for _, at in entity]}
            ).sort_values("at")
            for view, ttl, cols in (
                (
                    "feature_member_daily",
                    "2D",
                    "steps, active_minutes, sleep_minutes, sleep_efficiency",
                ),
                (
                    "feature_cardio",
                    "7D",
                    "resting_hr, resting_hr_7d, resting_hr_28d, hrv_ms, hrv_ms_28d",
                ),
            ):
                cur = conn.execute(
                    f"select member_uuid, event_ts, {cols} from analytics.{view}"  # noqa: S608
                    " where member_uuid = any(%s) order by event_ts",
                    (list({m for m, _ in entity}),),
                )
                right = pd.DataFrame(
                    cur.fetchall(), columns=[d.name for d in cur.description or ()]
                )
                right["event_ts"] = pd.to_datetime(right["event_ts"], utc=True)
                out = pd.merge_asof(
                    out,
                    right,
                    left_on="at",
                    right_on="event_ts",
                    left_by="member_id",
                    right_by="member_uuid",
                    direction="backward",
                    tolerance=pd.Timedelta(ttl),
                ).drop(columns=["member_uuid", "event_ts"])
            return len(out)

    n_ref, t_ref, mem_ref = _peak(reference)
    return {
        "rows": rows,
        "ours": {"rows_out": n_ours, "seconds": t_ours, "peak_mib": mem_ours},
        "merge_asof": {"rows_out": n_ref, "seconds": t_ref, "peak_mib": mem_ref},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=2000)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=500)
    a = p.parse_args(argv)
    ctx = StackContext.from_env()
    load_before = os.getloadavg()
    # The flows service's scheduled run would drain the queue first: hold its lock.
    held = ctx.db.connect("features", autocommit=True)
    held.execute("select pg_advisory_lock(%s)", (LOCK,))
    members = _cohort(ctx, a.members, a.days)
    store = open_store(ctx)
    try:
        rss_before = _rss_peak_mib()
        report, t_mat, mem_mat = _peak(lambda: materialise(ctx.db, store, lock=False))
        rss_after = _rss_peak_mib()
        held.close()
        online = _online(ctx, store, members[0], a.requests)
        training = _training(ctx, store, members, a.rows)
    finally:
        close_store(store)
    rows_out = sum(report.rows_out.values())
    result: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "args": vars(a),
        "materialise": {
            "members": report.members,
            "feature_rows_out": rows_out,
            "seconds": t_mat,
            "members_per_second": report.members / t_mat if t_mat else None,
            "feature_rows_per_second": rows_out / t_mat if t_mat else None,
            "peak_mib": mem_mat,
            # the process's peak RSS before and after (an upper bound on what it took)
            "rss_peak_mib_before": rss_before,
            "rss_peak_mib_after": rss_after,
            "batches": report.batches,
        },
        "online": online,
        "training_set": training,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    table = Table(title="Feature store (one run)", title_justify="left")
    for col in ("what", "figure", "reference (same run)"):
        table.add_column(col)
    g, b, f = online["governed_ms"], online["bare_sdk_ms"], online["https_floor_ms"]
    table.add_row(
        "online, one member (coaching_overview)",
        f"backend p50 {g['p50']:.2f} / p95 {g['p95']:.2f} / p99 {g['p99']:.2f} ms",
        f"bare Feast SDK p50 {b['p50']:.2f} / p95 {b['p95']:.2f} / p99 {b['p99']:.2f} ms;"
        f" HTTPS /healthz p50 {f['p50']:.2f} / p99 {f['p99']:.2f} ms",
    )
    o, r = training["ours"], training["merge_asof"]
    table.add_row(
        f"training set, {training['rows']:,} rows (research_model)",
        f"{o['seconds']:.1f} s, peak {o['peak_mib']:.0f} MiB",
        f"merge_asof {r['seconds']:.1f} s, peak {r['peak_mib']:.0f} MiB",
    )
    m = result["materialise"]
    table.add_row(
        f"materialisation, {m['members']:,} members",
        f"{m['members_per_second']:.0f} members/s ({m['feature_rows_per_second']:.0f} view rows/s),"
        f" peak {m['peak_mib']:.0f} MiB (Python)",
        f"process peak RSS {m['rss_peak_mib_before']:.0f} MiB before,"
        f" {m['rss_peak_mib_after']:.0f} MiB after",
    )
    Console().print(table)
    Console().print(f"load average before / after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "features.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
