"""Ingestion benchmark: end-to-end samples/s (API batch -> raw -> processed, with encryption
and validation) next to raw COPY of the same rows into the same hypertable, measured in the
same run on the same server. Also: refiner lag under sustained load and peak memory while
parsing a large Apple Health export.

    .venv/bin/python bench/ingest.py [--samples N] [--apple-mb MB] [--quick]

Prints a table and writes bench/results/ingest.json."""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from backend.analytics import rollups
from backend.api.api_keys import enrol, register, revoke
from backend.db import migrate
from backend.refine.files import enrol_members
from backend.refine.normalise import dedup_key
from backend.stack.context import StackContext
from tests.conftest import create_scratch_database, drop_scratch_database

RESULTS = Path(__file__).parent / "results"
BATCH = 5_000


def _samples(member: uuid.UUID, n: int, offset: int) -> list[dict[str, object]]:
    base = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
    out = []
    for i in range(offset, offset + n):
        t = base + dt.timedelta(seconds=15 * i)
        out.append(
            {
                "code": "8867-4",
                "value": 55 + (i * 7) % 90,
                "unit": "count/min",
                "start": t.isoformat(),
            }
        )
    return out


def make_batches(total: int, members: int) -> list[bytes]:
    per_member = max(BATCH, total // members)
    bodies = []
    made = 0
    m = 0
    while made < total:
        member = uuid.uuid4()  # fresh members each run: no duplicates from earlier runs
        for off in range(0, per_member, BATCH):
            n = min(BATCH, total - made)
            if n <= 0:
                break
            bodies.append(
                json.dumps(
                    {
                        "batch_id": f"bench-{uuid.uuid4()}",
                        "member_id": str(member),
                        "device": "bench-watch",
                        "samples": _samples(member, n, off),
                    }
                ).encode()
            )
            made += n
        m += 1
    return bodies


def copy_reference(ctx: StackContext, bodies: list[bytes]) -> float:
    """Raw COPY of exactly the rows the pipeline would write, into processed.observations of a
    scratch database with the same indexes: the physical ceiling for this server."""
    access = create_scratch_database(ctx)
    try:
        migrate.upgrade(access)
        rows = []
        rid = uuid.uuid4()
        now = dt.datetime.now(dt.UTC)
        for body in bodies:
            b = json.loads(body)
            member = uuid.UUID(b["member_id"])
            for s in b["samples"]:
                t = dt.datetime.fromisoformat(s["start"])
                rows.append(
                    (
                        member,
                        t,
                        "8867-4",
                        float(s["value"]),
                        "/min",
                        "bench",
                        rid,
                        now,
                        dedup_key(member, "8867-4", t, None, None, float(s["value"])),
                    )
                )
        with access.connect("owner") as conn:
            started = time.perf_counter()
            with conn.cursor().copy(
                "COPY processed.observations (member_id, observed_at, code, value, unit, source,"
                " raw_record_id, raw_received_at, dedup_key) FROM STDIN"
            ) as copy:
                for r in rows:
                    copy.write_row(r)
            conn.commit()
            elapsed = time.perf_counter() - started
        return len(rows) / elapsed
    finally:
        drop_scratch_database(ctx, access)


def end_to_end(
    ctx: StackContext, bodies: list[bytes], concurrency: int, rate: float | None = None
) -> dict[str, float]:
    """Post every batch (as fast as possible, or paced at `rate` samples/s for a sustained
    load) and wait until the last one is refined."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    members = sorted({uuid.UUID(json.loads(b)["member_id"]) for b in bodies})
    enrol_members(ctx.db, members, "local")
    with ctx.db.connect("owner") as conn:
        key = register(conn, name)
        enrol(conn, name, members)  # a source writes only for its enrolled members
    tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
    latencies: list[float] = []
    batch_ids: list[str] = []
    staleness: list[float] = []
    sampling = threading.Event()

    def sample_rollups() -> None:
        # The oldest key still queued for the rollups, every 0.25 s: how stale the analytics
        # zone is at worst (every refined row's key is queued in its refine transaction).
        with ctx.db.connect("query", autocommit=True) as conn:
            while not sampling.wait(0.25):
                staleness.append(rollups.backlog(conn)[1] or 0.0)

    sampler = threading.Thread(target=sample_rollups, daemon=True)
    sampler.start()
    try:
        with httpx.Client(
            base_url=ctx.backend_url,
            verify=tls,
            timeout=120,
            headers={"Authorization": f"Bearer {key}", "content-type": "application/json"},
        ) as client:

            def post(body: bytes) -> tuple[str, float]:
                t0 = time.perf_counter()
                r = client.post("/v1/ingest/batches", content=body)
                r.raise_for_status()
                return r.json()["batch_id"], time.perf_counter() - t0

            started = time.perf_counter()
            with cf.ThreadPoolExecutor(concurrency) as pool:
                futures = []
                for n, body in enumerate(bodies):
                    if rate:
                        due = started + n * BATCH / rate
                        time.sleep(max(0.0, due - time.perf_counter()))
                    futures.append(pool.submit(post, body))
                for f in futures:
                    bid, lat = f.result()
                    batch_ids.append(bid)
                    latencies.append(lat)
            acked = time.perf_counter() - started
        # refined: every batch has its ledger row
        with ctx.db.connect("refiner", autocommit=True) as conn:
            while True:
                ledgered = conn.execute(
                    "select count(*) from processed.batch_ledger where batch_id = any(%s::uuid[])",
                    (batch_ids,),
                ).fetchone()
                if ledgered and ledgered[0] == len(batch_ids):
                    break
                time.sleep(0.05)
            done = time.perf_counter() - started
            while rollups.backlog(conn)[0]:
                time.sleep(0.05)
            rolled = time.perf_counter() - started
            lags = [
                r[0]
                for r in conn.execute(
                    "select extract(epoch from l.refined_at - b.received_at)"
                    " from raw.batches b join processed.batch_ledger l using (batch_id)"
                    " where b.batch_id = any(%s::uuid[])",
                    (batch_ids,),
                ).fetchall()
            ]
            processed = conn.execute(
                "select sum(processed), sum(duplicate), sum(quarantined)"
                " from processed.batch_ledger where batch_id = any(%s::uuid[])",
                (batch_ids,),
            ).fetchone()
    finally:
        sampling.set()
        sampler.join(5)
        with ctx.db.connect("owner") as conn:
            revoke(conn, name)
    total = sum(len(json.loads(b)["samples"]) for b in bodies)
    stale = sorted(staleness)
    lags_sorted = sorted(float(x) for x in lags)
    return {
        "samples": total,
        "processed": float(processed[0] or 0) if processed else 0.0,
        "ack_rate": total / acked,
        "end_to_end_rate": total / done,
        "request_p50_s": statistics.median(latencies),
        "request_p95_s": lags_p(sorted(latencies), 0.95),
        "refiner_lag_p50_s": lags_p(lags_sorted, 0.5),
        "refiner_lag_p95_s": lags_p(lags_sorted, 0.95),
        # rollups: the oldest queued key's age, sampled; and the queue drained after the
        # last batch was refined
        "rollup_staleness_p50_s": lags_p(stale, 0.5),
        "rollup_staleness_p95_s": lags_p(stale, 0.95),
        "rollups_drained_after_refined_s": rolled - done,
    }


def lags_p(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def apple_memory(mb: int) -> dict[str, float]:
    """Generate an Apple Health export of ~mb MB, parse it in a child process, report peak RSS."""
    from backend.synth.cohort import CohortSpec, apple_export, members

    spec = CohortSpec(members=1, seed=7)
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        path = Path(tmp) / "export.xml"
        records = mb * 1024 * 1024 // 330  # ~330 bytes per Record element
        apple_export(spec, members(spec)[0], path, records)
        size = path.stat().st_size
        # A child process of its own, so its peak RSS is the parser's alone.
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "from bench.ingest import parse_child; parse_child()",
                str(path),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
    return {
        "file_mb": size / 1e6,
        "records": float(out[1]),
        "seconds": float(out[2]),
        "records_per_s": float(out[1]) / float(out[2]),
        "peak_rss_mb": float(out[3]) / 1024,
    }


def parse_child() -> None:
    import resource

    from backend.ingest.formats.apple_health import parse_path
    from backend.ingest.model import ParseReport

    report = ParseReport()
    started = time.perf_counter()
    n = sum(1 for _ in parse_path(Path(sys.argv[1]), report))
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(n, report.read, elapsed, peak_kb)  # noqa: T201 - read by the parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=500_000)
    ap.add_argument("--members", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument(
        "--rate",
        type=float,
        default=10_000,
        help="samples/s for the sustained-load phase (the 100,000-member average is 2,000-3,500)",
    )
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--apple-mb", type=int, default=1024)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.samples, args.apple_mb, args.seconds = 50_000, 50, 10
    console = Console()
    ctx = StackContext.from_env()
    bodies = make_batches(args.samples, args.members)
    with console.status("raw COPY reference"):
        copy_rate = copy_reference(ctx, bodies)
    with console.status(f"end to end: {len(bodies)} API batches, as fast as they go"):
        e2e = end_to_end(ctx, bodies, args.concurrency)
    steady_bodies = make_batches(int(args.rate * args.seconds), args.members)
    with console.status(f"sustained: {args.rate:,.0f} samples/s for {args.seconds} s"):
        steady = end_to_end(ctx, steady_bodies, args.concurrency, rate=args.rate)
    apple = {"file_mb": 0.0, "records_per_s": float("nan"), "peak_rss_mb": float("nan")}
    if args.apple_mb > 0:
        with console.status(f"parsing a {args.apple_mb} MB Apple Health export"):
            apple = apple_memory(args.apple_mb)
    ratio = e2e["end_to_end_rate"] / copy_rate
    table = Table(title="Ingestion benchmark", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    ms = 1000
    rows = [
        ("samples (API batches of 5,000)", f"{e2e['samples']:,.0f}"),
        ("raw COPY into processed.observations", f"{copy_rate:,.0f} samples/s"),
        (
            "end to end: API -> raw (encrypted) -> processed",
            f"{e2e['end_to_end_rate']:,.0f} samples/s",
        ),
        ("  ratio to raw COPY", f"{ratio:.2f}"),
        ("acknowledged (landed) rate", f"{e2e['ack_rate']:,.0f} samples/s"),
        (
            "API request p50 / p95",
            f"{e2e['request_p50_s'] * ms:.0f} / {e2e['request_p95_s'] * ms:.0f} ms",
        ),
        (
            "refiner lag p50 / p95, burst (every batch at once)",
            f"{e2e['refiner_lag_p50_s']:.2f} / {e2e['refiner_lag_p95_s']:.2f} s",
        ),
        (
            f"refiner lag p50 / p95, sustained {args.rate:,.0f} samples/s for {args.seconds} s",
            f"{steady['refiner_lag_p50_s']:.2f} / {steady['refiner_lag_p95_s']:.2f} s",
        ),
        (
            "rollup staleness p50 / p95 under that load (target <= 10 s)",
            f"{steady['rollup_staleness_p50_s']:.2f} / {steady['rollup_staleness_p95_s']:.2f} s"
            f" (drained {steady['rollups_drained_after_refined_s']:.2f} s after the last batch)",
        ),
        (
            f"Apple export parse ({apple['file_mb']:,.0f} MB)",
            f"{apple['records_per_s']:,.0f} records/s",
        ),
        ("  peak memory (RSS) while parsing", f"{apple['peak_rss_mb']:,.0f} MB"),
    ]
    for r in rows:
        table.add_row(*r)
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "copy_reference_rate": copy_rate,
        "sustained": steady,
        "end_to_end": e2e,
        "ratio_to_copy": ratio,
        "apple_export": apple,
        "args": vars(args),
    }
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2))
    console.print(f"written {RESULTS / 'ingest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
