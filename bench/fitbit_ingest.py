"""Fitbit export benchmark: one member-year at one-second heart rate (~31.7 M samples)
generated as a real-shaped Fitbit account export (backend/synth/fitbit.py), then

1. parse: the export read by the Fitbit parser alone (records/s, peak RSS);
2. end to end: landed as one batch (encrypted, in the raw zone) and refined into the
   processed zone by the refiner's own code (samples/s, peak RSS of that process);
3. reference: the very rows step 2 stored, dumped, the hypertable emptied, and COPYed
   back into processed.observations of the same database: the server's ceiling.

Steps 1 and 2 run in processes of their own, so each peak RSS is that step's (target:
flat, under 300 MB whatever the export's size). Everything happens in a scratch database
of the running stack, dropped afterwards.

    .venv/bin/python bench/fitbit_ingest.py [--days 365] [--hr-every 1]

Prints a table and writes bench/results/fitbit_ingest.json."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import resource
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import machine
from rich.console import Console
from rich.table import Table

from backend.db import migrate
from backend.db.access import DatabaseAccess
from backend.runtime import Runtime
from backend.synth.fitbit import write_export, zone_name
from backend.synth.members import CohortSpec, member
from tests.conftest import create_scratch_database, drop_scratch_database

RESULTS = Path(__file__).resolve().parent / "results"
_COLUMNS = (
    "member_id, observed_at, ended_at, code, value, unit, source, qualifier, tz_offset_minutes,"
    " quality_flags, dedup_key, raw_record_id, raw_received_at, batch_id"
)
# Our own constant column list, never input.
_DUMP = f"COPY (select {_COLUMNS} from processed.observations) TO STDOUT (FORMAT BINARY)"  # noqa: S608
_LOAD = f"COPY processed.observations ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_step(path: str, tz: str, out: Any) -> None:
    """Child: parse the export, count what comes out."""
    from backend.ingest.formats.fitbit import parse
    from backend.ingest.model import ParseReport, Sample

    report = ParseReport()
    started = time.perf_counter()
    with Path(path).open("rb") as data:
        samples = sum(isinstance(o, Sample) for o in parse(data, report, options={"tz": tz}))
    out.put(
        {
            "seconds": time.perf_counter() - started,
            "records": report.read,
            "samples": samples,
            "peak_rss_mb": _peak_mb(),
        }
    )


def end_to_end_step(access: DatabaseAccess, keys_dir: str, path: str, who: str, out: Any) -> None:
    """Child: land the export (encrypted) and refine it, as `rejuve ingest` does."""
    from backend.ingest.landing import land
    from backend.keys.keystore import KeyStore
    from backend.keys.kms import LocalKms
    from backend.refine.refiner import refine_batch

    keys = KeyStore(Path(keys_dir) / "keys", LocalKms.from_file(Path(keys_dir) / "master.key"))
    member_id = uuid.UUID(who)
    started = time.perf_counter()
    with access.connect("ingest") as conn, Path(path).open("rb") as data:
        receipt = land(
            conn,
            keys,
            source="bench:fitbit",
            fmt="fitbit",
            member_id=member_id,
            region="local",
            data=data,
            file_name=Path(path).name,
        )
    landed = time.perf_counter()
    with access.connect("refiner") as conn:
        outcome = refine_batch(conn, keys, receipt.batch_id)
    done = time.perf_counter()
    assert outcome is not None and outcome.error is None, outcome
    out.put(
        {
            "land_seconds": landed - started,
            "refine_seconds": done - landed,
            "seconds": done - started,
            "bytes": receipt.bytes,
            "parsed": outcome.parsed,
            "processed": outcome.processed,
            "quarantined": outcome.quarantined,
            "duplicate": outcome.duplicate,
            "balanced": outcome.balanced,
            "peak_rss_mb": _peak_mb(),
        }
    )


def _in_child(target: Any, *args: Any) -> dict[str, Any]:
    spawn = mp.get_context("spawn")
    out = spawn.Queue()
    child = spawn.Process(target=target, args=(*args, out))
    child.start()
    result: dict[str, Any] = out.get()
    child.join()
    if child.exitcode:
        raise SystemExit(f"{target.__name__} failed (exit {child.exitcode})")
    return result


def copy_reference(access: DatabaseAccess, dump: Path) -> dict[str, float]:
    """The stored rows out to a file, the table emptied, the rows COPYed back in."""
    with access.connect("owner") as conn:
        with (
            dump.open("wb") as f,
            conn.cursor().copy(_DUMP) as copy,
        ):
            for block in copy:
                f.write(block)
        conn.execute("TRUNCATE processed.observations")
        conn.commit()
        started = time.perf_counter()
        with (
            dump.open("rb") as f,
            conn.cursor().copy(_LOAD) as copy,
        ):
            while block := f.read(1024 * 1024):
                copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - started
        row = conn.execute("select count(*) from processed.observations").fetchone()
    rows = int(row[0]) if row else 0
    return {
        "rows": rows,
        "seconds": seconds,
        "rate": rows / seconds,
        "dump_mb": dump.stat().st_size / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--days", type=int, default=365, help="days of data (one member)")
    ap.add_argument("--hr-every", type=int, default=1, help="seconds between heart-rate readings")
    args = ap.parse_args(argv)
    console = Console()
    ctx = Runtime.from_env()
    load_before = os.getloadavg()
    # Ends well before today: the refiner quarantines samples from the future.
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    spec = CohortSpec(members=1, days=args.days + 1, seed=11, start=start, bad_rate=0.0)
    who = member(spec, 0)
    tz = zone_name(who)
    with tempfile.TemporaryDirectory(prefix="rejuve-bench-fitbit-") as tmp:
        export = Path(tmp) / "fitbit-export.zip"
        with console.status(f"generating {args.days} days at one reading every {args.hr_every} s"):
            t0 = time.perf_counter()
            tally = write_export(
                spec, who, export, days=args.days + 1, hr_every_seconds=args.hr_every, bad_rate=0.0
            )
            generated_s = time.perf_counter() - t0
        with console.status(f"parsing {tally.samples:,} samples"):
            parsed = _in_child(parse_step, str(export), tz)
        access = create_scratch_database(ctx)
        try:
            migrate.upgrade(access)
            from backend.refine.files import enrol_members

            enrol_members(access, [who.member_id], "local")
            with console.status("end to end: land (encrypted) and refine into the processed zone"):
                e2e = _in_child(end_to_end_step, access, tmp, str(export), str(who.member_id))
            with console.status("reference: the same rows COPYed into the same hypertable"):
                copy = copy_reference(access, Path(tmp) / "rows.bin")
        finally:
            drop_scratch_database(ctx, access)
        export_mb = export.stat().st_size / 1e6
    e2e_rate = e2e["processed"] / e2e["seconds"]
    table = Table(title="Fitbit export: one member-year", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        (
            "export (zip)",
            f"{export_mb:,.0f} MB, {tally.records:,} records, generated in {generated_s:,.0f} s",
        ),
        (f"samples (heart rate every {args.hr_every} s, steps, sleep, ...)", f"{tally.samples:,}"),
        (
            "parse only",
            f"{parsed['samples'] / parsed['seconds']:,.0f} samples/s ({parsed['seconds']:,.0f} s)",
        ),
        ("  peak memory (RSS)", f"{parsed['peak_rss_mb']:,.0f} MB"),
        (
            "end to end: land (encrypted) + refine",
            f"{e2e_rate:,.0f} samples/s"
            f" ({e2e['land_seconds']:,.0f} + {e2e['refine_seconds']:,.0f} s)",
        ),
        (
            "  processed / duplicate / quarantined",
            f"{e2e['processed']:,} / {e2e['duplicate']:,} / {e2e['quarantined']:,}",
        ),
        ("  peak memory (RSS)", f"{e2e['peak_rss_mb']:,.0f} MB"),
        (
            "raw COPY of the same rows, same hypertable",
            f"{copy['rate']:,.0f} rows/s ({copy['seconds']:,.0f} s)",
        ),
        ("  end to end / raw COPY", f"{e2e_rate / copy['rate']:.2f}"),
    ]
    for r in rows:
        table.add_row(*r)
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "machine": machine.described(load_before),
        "args": vars(args),
        "export_mb": export_mb,
        "generated_seconds": generated_s,
        "tally": tally.__dict__,
        "parse": parsed,
        "end_to_end": {**e2e, "rate": e2e_rate},
        "copy_reference": copy,
        "ratio_to_copy": e2e_rate / copy["rate"],
    }
    (RESULTS / "fitbit_ingest.json").write_text(json.dumps(result, indent=2))
    console.print(f"written {RESULTS / 'fitbit_ingest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
