"""The demo job: the whole stack up, a synthetic cohort through every door (device batches
over the HTTPS API, Apple Health, FHIR, Open mHealth and CSV lab files), then the proof
that nothing was lost and what the data looks like, and where everything runs.

Everything the demo needs ships in this package: the sample files in `samples/` (copies
of one test fixture per format) and the governed part in `study.py`."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import ssl
import tomllib
import uuid
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from backend.api.api_keys import enrol as enrol_source
from backend.api.api_keys import register
from backend.demo import coaching as demo_coaching
from backend.demo import notebook as demo_notebook
from backend.demo import study as demo_study
from backend.exceptions import UserError
from backend.governance.members import Enrolment, enrol
from backend.refine.files import ingest_file, ingest_multi_member_csv, wait_refined
from backend.refine.reconcile import Reconciliation, reconcile
from backend.stack import supervisor
from backend.stack.context import StackContext
from backend.stack.status_table import services_table
from backend.synth.cohort import CohortSpec, write_cohort
from backend.synth.manifest import Manifest

SAMPLES = Path(__file__).resolve().parent / "samples"
# One sample file per format, as users bring them.
SAMPLE_FILES = [
    ("apple-health", "apple-health-export.xml", None),
    ("fhir", "fhir-labs-searchset.json", None),
    ("omh", "omh-mixed-points.json", None),
    ("csv-lab", "labs-eu.csv", "mapping-eu.toml"),
]
DEMO_MEMBER = uuid.UUID("d3e0d3e0-0000-4000-8000-000000000001")
# Two members also bring Garmin, FIT and Health Connect files: the demo shows every format.
SPEC = CohortSpec(members=20, days=3, seed=42, wearable_exports=2)
# The cohort's version names its folder and its device source. A device batch id is unique
# per source, so a new version's batches (other content under the same ids) go in under a
# source of their own instead of being refused as reused ids on a stack that ran an older
# demo. v3: Fitbit, Garmin, FIT and Health Connect files too; v2: device clocks set months
# (not decades) ahead, which the API accepts.
COHORT = "cohort-v3"
DEVICES = f"demo-devices-{COHORT}"


def _cohort(ctx: StackContext) -> tuple[Path, Manifest]:
    root = ctx.layout.private_dir("demo") / f"{COHORT}-{SPEC.members}x{SPEC.days}-{SPEC.seed}"
    if not (root / "manifest.json").exists():
        write_cohort(SPEC, root)
    return root, Manifest.load(root / "manifest.json")


def _post_batches(
    ctx: StackContext, root: Path, manifest: Manifest, progress: Progress
) -> list[str]:
    with ctx.db.connect("owner") as conn:
        key = register(conn, DEVICES, rotate=True)
        # The demo's devices write for the cohort's members and no one else.
        enrol_source(conn, DEVICES, [m.member_id for m in manifest.members])
    tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
    files = [f for f in manifest.files if f.format == "device-batch"]
    task = progress.add_task("device batches -> HTTPS API", total=len(files))
    ids: list[str] = []
    with httpx.Client(
        base_url=ctx.backend_url,
        verify=tls,
        timeout=60,
        headers={"Authorization": f"Bearer {key}", "content-type": "application/json"},
    ) as client:

        def post(path: str) -> str:
            r = client.post("/v1/ingest/batches", content=(root / path).read_bytes())
            if r.status_code not in (200, 201):
                raise UserError(f"the API refused {path}: {r.status_code} {r.text[:200]}")
            progress.advance(task)
            return str(r.json()["batch_id"])

        with cf.ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(post, [f.path for f in files]))
    return ids


def _ingest_files(
    ctx: StackContext, root: Path, manifest: Manifest, progress: Progress, samples: bool = True
) -> None:
    keys = ctx.keystore()
    region = ctx.settings.region
    files = [f for f in manifest.files if f.format != "device-batch"]
    task = progress.add_task("cohort files -> raw -> processed", total=len(files))
    for f in files:
        if f.member is None:
            ingest_multi_member_csv(
                ctx.db, keys, path=root / f.path, region=region, source="demo:labs"
            )
        else:
            ingest_file(
                ctx.db,
                keys,
                path=root / f.path,
                fmt=f.format,
                member_id=uuid.UUID(f.member),
                region=region,
                source=f"demo:{f.format}",
                parse_options=f.options,
            )
        progress.advance(task)
    if not samples:
        return
    task = progress.add_task("sample files, one per format", total=len(SAMPLE_FILES))
    for fmt, name, mapping in SAMPLE_FILES:
        options = tomllib.loads((SAMPLES / mapping).read_text()) if mapping else None
        ingest_file(
            ctx.db,
            keys,
            path=SAMPLES / name,
            fmt=fmt,
            member_id=DEMO_MEMBER,
            region=region,
            source=f"demo-sample:{fmt}",
            parse_options=options,
            enrol=True,
        )
        progress.advance(task)


def _summary(result: Reconciliation) -> Table:
    by_format: dict[str, list[int]] = {}
    for b in result.batches:
        t = by_format.setdefault(b.fmt, [0, 0, 0, 0, 0, 0])
        for i, v in enumerate(
            (1, b.parsed, b.processed, b.quarantined, b.duplicate, sum(b.unmapped.values()))
        ):
            t[i] += v
    table = Table(
        title="Reconciliation: parsed = processed + quarantined + duplicate", title_justify="left"
    )
    for col in ("format", "batches", "parsed", "processed", "quarantined", "duplicate", "unmapped"):
        table.add_column(col, justify="left" if col == "format" else "right")
    for fmt, t in sorted(by_format.items()):
        table.add_row(fmt, *(f"{v:,}" for v in t))
    totals = result.totals()
    table.add_row(
        "[bold]all[/]",
        *(
            f"[bold]{totals[k]:,}[/]"
            if k != "unmapped"
            else f"[bold]{sum(totals[k].values()):,}[/]"
            for k in ("batches", "parsed", "processed", "quarantined", "duplicate", "unmapped")
        ),
    )
    return table


def _quality(ctx: StackContext, since: dt.datetime) -> Table:
    with ctx.db.connect("refiner") as conn:
        rows = conn.execute(
            "select format, count(*), avg(completeness), avg(validity_rate), avg(duplicate_rate),"
            " percentile_cont(0.5) within group (order by lateness_p50_s),"
            " max(refine_lag_s) from analytics.batch_quality where received_at >= %s"
            " group by format order by format",
            (since,),
        ).fetchall()
    table = Table(title="Data quality (averages over this run's batches)", title_justify="left")
    for col in (
        "format",
        "batches",
        "complete",
        "valid",
        "duplicate",
        "lateness p50",
        "max refine lag",
    ):
        table.add_column(col, justify="left" if col == "format" else "right")
    for fmt, n, comp, valid, dup, late, lag in rows:
        table.add_row(
            fmt,
            f"{n:,}",
            "-" if comp is None else f"{comp:.1%}",
            "-" if valid is None else f"{valid:.1%}",
            "-" if dup is None else f"{dup:.1%}",
            f"{(late or 0) / 3600:.1f} h",
            f"{lag:.2f} s",
        )
    return table


def _feature_views(ctx: StackContext) -> Table:
    """The feature store's catalogue as Feast's registry holds it (`rejuve features list`)."""
    from backend.features import catalogue
    from backend.features.environment import close_store, open_store

    store = open_store(ctx)
    try:
        table = Table(title="Feast feature views (rejuve features list)", title_justify="left")
        for col in ("view", "features", "services"):
            table.add_column(col)
        for name, features, services, _ in catalogue.views(store):
            table.add_row(name, ", ".join(features), ", ".join(services))
        return table
    finally:
        close_store(store)


def run_demo(ctx: StackContext, console: Console) -> None:
    with console.status("starting the local stack") as spinner:
        supervisor.up(ctx, progress=lambda m: spinner.update(m))
    with ctx.db.connect("refiner") as conn:
        now = conn.execute("select now()").fetchone()
    started = now[0] if now else dt.datetime.now(dt.UTC)
    with console.status(
        f"writing a synthetic cohort ({SPEC.members} members x {SPEC.days} days) in every format"
    ):
        root, manifest = _cohort(ctx)
    with ctx.db.connect("backend") as conn:
        for m in manifest.members:
            enrol(conn, Enrolment(m.member_id, ctx.settings.region, m.birth_year, m.sex))
    today = started.date()
    with console.status(
        f"writing the coaching cohort ({demo_coaching.MEMBERS} members x"
        f" {demo_coaching.DAYS} days up to today, some with injected episodes)"
    ):
        coach_root, coach_manifest = demo_coaching.cohort(ctx, today)
    coached = demo_coaching.enrol_cohort(ctx, coach_manifest)
    t = manifest.totals()
    console.print(
        f"cohort: {len(manifest.members)} members, {len(manifest.files)} files, "
        f"{t['samples']:,} samples ({t['bad']:,} bad and {t['duplicates']:,} "
        f"duplicated on purpose) in {root}"
    )
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        batch_ids = _post_batches(ctx, root, manifest, progress)
        _ingest_files(ctx, root, manifest, progress)
        batch_ids += _post_batches(ctx, coach_root, coach_manifest, progress)
        _ingest_files(ctx, coach_root, coach_manifest, progress, samples=False)
    with console.status("waiting for the refiner"), ctx.db.connect("refiner") as conn:
        wait_refined(conn, batch_ids, timeout=300)
    with ctx.db.connect("refiner") as conn:
        result = reconcile(conn, since=started)
        device = reconcile(conn).batches
    # Device batches resent on a second run are recognised and not landed again; count the
    # ones this run posted, whenever they first landed.
    posted = set(batch_ids)
    result.batches.extend(
        b for b in device if str(b.batch_id) in posted and b.received_at < started
    )
    console.print(_summary(result))
    console.print(
        "[green]reconciled: nothing lost[/]"
        if result.ok
        else "[red]does NOT reconcile: see `rejuve reconcile`[/]"
    )
    console.print(_quality(ctx, started))
    with console.status("a study over the cohort, asked by a researcher through the backend"):
        password_kept = demo_study.prepare(ctx, [m.member_id for m in manifest.members])
        answer = demo_study.first_question(ctx, password_kept, SPEC.start, SPEC.end)
    console.print(demo_study.as_table(answer))
    with console.status("the researcher's first notebook, run as JupyterHub runs it"):
        html = demo_notebook.first_notebook_html(
            ctx,
            password_kept,
            SPEC.start,
            SPEC.end,
            ctx.layout.private_dir("demo") / "01_first_cohort.html",
        )
    console.print(f"Notebook 01 with its plots (no network needed): [bold]file://{html}[/]")
    with console.status("the coach's members: consent, assignments, alerts over their five weeks"):
        demo_coaching.prepare(ctx, coached)
        demo_coaching.wait_summarised(ctx, coached)
        found = demo_coaching.detect(ctx, coached, today)
    console.print(
        f"alerts for {demo_coaching.COACH}'s {len(coached)} members: {found.inserted} new"
        f" ({found.fired} flags over {found.member_days} member-days)"
    )
    console.print(_feature_views(ctx))
    console.print(services_table(supervisor.status(ctx)))
    console.print(
        f"JupyterHub: [bold]{ctx.hub.url}[/] (log in as {demo_study.RESEARCHER}: password"
        f" '{demo_study.KEPT_AS}' in {ctx.layout.secrets_file}; more accounts:"
        " rejuve users add)   "
        f"Prefect UI: [bold]{ctx.prefect.ui_url}[/]   API docs: "
        f"[bold]{ctx.backend_url}/docs[/]   (certificates from the local CA "
        f"{ctx.layout.ca_cert})"
    )
    coach_url = next((r.url for r in supervisor.status(ctx, ["coach"])), "")
    console.print(demo_coaching.where(ctx, coach_url))
    console.print(
        "Stop everything with [bold]make down[/] (data is kept; [bold]make demo[/] again is quick)."
    )
    if not result.ok:
        raise UserError("the demo's data does not reconcile")
