"""`rejuve ingest | reconcile | quarantine | quality`: the data steward's commands."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from backend.cli.output import console, print_json
from backend.exceptions import UserError
from backend.stack.context import StackContext

quarantine_app = typer.Typer(no_args_is_help=True, help="Review quarantined records.")


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise UserError(f"{what} '{value}' is not a UUID") from None


def ingest(
    ctx: StackContext,
    path: Path,
    fmt: str,
    member: str | None,
    source: str | None,
    batch_id: str | None,
    mapping: Path | None,
    timeout: float,
) -> None:
    from backend.refine.files import ingest_file, ingest_multi_member_csv

    options = _mapping_options(mapping) if mapping else None
    if member is None:
        if fmt != "csv-lab":
            raise UserError(f"--member is needed for {fmt} files")
        with console.status(f"splitting {path.name} by member, landing and refining"):
            results = ingest_multi_member_csv(
                ctx.db,
                ctx.keystore(),
                path=path,
                region=ctx.settings.region,
                source=source,
                parse_options=options,
                timeout=timeout,
            )
        lines = [r.line for r in results]
        console.print(f"{path.name}: {len(results)} members, one encrypted batch each")
        console.print(_reconcile_table(lines, title=f"{path.name}"))
        if not all(ln.ok for ln in lines):
            raise UserError("the file does not reconcile")
        return
    member_id = _uuid(member, "member")
    size = path.stat().st_size if path.is_file() else 0
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"landing {path.name}", total=size)
        result = ingest_file(
            ctx.db,
            ctx.keystore(),
            path=path,
            fmt=fmt,
            member_id=member_id,
            region=ctx.settings.region,
            source=source,
            client_batch_id=batch_id,
            parse_options=options,
            timeout=timeout,
            progress=lambda n: bar.advance(task, n),
        )
    receipt, line = result.receipt, result.line
    verb = "already landed as" if receipt.replayed else "landed as"
    console.print(
        f"{path.name}: {receipt.bytes:,} bytes {verb} batch {receipt.batch_id} "
        f"({receipt.records} raw records, encrypted)"
    )
    if line.error:
        raise UserError(line.error, f"the file is kept in the raw zone as batch {receipt.batch_id}")
    console.print(_reconcile_table([line], title=f"batch {receipt.batch_id}"))
    if line.unmapped:
        top = sorted(line.unmapped.items(), key=lambda kv: -kv[1])[:10]
        console.print(
            "unmapped (counted, not processed): " + ", ".join(f"{k} {v:,}" for k, v in top)
        )
    if not line.ok:
        raise UserError("the batch does not reconcile", "; ".join(line.problems))


def _mapping_options(path: Path) -> dict[str, object]:
    """Check the mapping now (a bad one is refused before anything lands), keep it as a dict
    in the batch manifest so the refiner reads the file the same way."""
    import tomllib

    from backend.ingest.formats.csv_lab import CsvMapping, MappingError

    try:
        CsvMapping.from_toml(path)
        return dict(tomllib.loads(path.read_text()))
    except (OSError, MappingError) as e:
        raise UserError(f"{path}: {e}") from None


def _reconcile_table(lines: list, title: str) -> Table:  # type: ignore[type-arg]
    table = Table(title=title, title_justify="left")
    for col in (
        "batch",
        "format",
        "parsed",
        "processed",
        "quarantined",
        "duplicate",
        "unmapped",
        "check",
    ):
        table.add_column(
            col, justify="right" if col not in ("batch", "format", "check") else "left"
        )
    for b in lines:
        unmapped = sum(b.unmapped.values())
        check = "[green]ok[/]" if b.ok else f"[red]{'; '.join(b.problems)}[/]"
        if b.error:
            check = f"[yellow]unreadable: {b.error}[/]"
        table.add_row(
            str(b.batch_id)[:8],
            b.fmt,
            f"{b.parsed:,}",
            f"{b.processed:,}",
            f"{b.quarantined:,}",
            f"{b.duplicate:,}",
            f"{unmapped:,}",
            check,
        )
    return table


def reconcile_cmd(
    ctx: StackContext, batch: str | None, since: str | None, as_json: bool, grace: float
) -> bool:
    from backend.refine.reconcile import reconcile

    since_dt = None
    if since:
        try:
            since_dt = dt.datetime.fromisoformat(since)
        except ValueError:
            raise UserError(f"--since '{since}' is not an ISO date or time") from None
        if since_dt.tzinfo is None:
            since_dt = since_dt.replace(tzinfo=dt.UTC)
    with ctx.db.connect("refiner") as conn:
        result = reconcile(
            conn,
            batch=_uuid(batch, "batch") if batch else None,
            since=since_dt,
            grace=dt.timedelta(seconds=grace),
        )
    if as_json:
        print_json(result.as_dict())
        return result.ok
    console.print(_reconcile_table(result.batches[-50:], title="Reconciliation (last 50 batches)"))
    totals = result.totals()
    summary = Table(title="Totals", title_justify="left")
    columns = (
        "batches",
        "parsed",
        "processed",
        "quarantined",
        "duplicate",
        "pending",
        "failed_batches",
        "problems",
    )
    for key in columns:
        summary.add_column(key, justify="right")
    summary.add_row(*(f"{totals[k]:,}" for k in columns))
    console.print(summary)
    if totals["unmapped"]:
        unm = Table(title="Unmapped record types (counted, not processed)", title_justify="left")
        unm.add_column("type")
        unm.add_column("count", justify="right")
        for k, v in list(totals["unmapped"].items())[:20]:
            unm.add_row(k, f"{v:,}")
        console.print(unm)
    console.print(
        "[green]reconciled: nothing lost[/]" if result.ok else "[red]does NOT reconcile[/]"
    )
    return result.ok


@quarantine_app.command("list")
def quarantine_list(
    status: Annotated[str, typer.Option(help="open, released, rejected or all")] = "open",
    batch: Annotated[str | None, typer.Option(help="only this batch")] = None,
    reason: Annotated[str | None, typer.Option(help="only this reason")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List quarantined records (newest first)."""
    from backend.cli.main import context
    from backend.refine import quarantine as q

    ctx = context()
    with ctx.db.connect("refiner") as conn:
        entries = q.list_entries(
            conn,
            status=None if status == "all" else status,
            batch=_uuid(batch, "batch") if batch else None,
            reason=reason,
            limit=limit,
        )
    if as_json:
        print_json([e.__dict__ for e in entries])
        return
    table = Table(title=f"Quarantine ({status})", title_justify="left")
    for col in ("id", "reason", "field", "where", "detail", "status"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            str(e.quarantine_id),
            e.reason,
            e.field or "-",
            e.locator or "-",
            e.detail or "-",
            e.status,
        )
    console.print(table)


@quarantine_app.command("show")
def quarantine_show(quarantine_id: str) -> None:
    """Show one quarantined record in full."""
    from backend.cli.main import context
    from backend.refine import quarantine as q

    with context().db.connect("refiner") as conn:
        e = q.get(conn, _uuid(quarantine_id, "quarantine id"))
    print_json({**e.__dict__})


@quarantine_app.command("release")
def quarantine_release(
    quarantine_id: str,
    set_: Annotated[list[str] | None, typer.Option("--set", help="FIELD=VALUE correction")] = None,
    note: Annotated[str | None, typer.Option(help="why")] = None,
) -> None:
    """Correct a record (--set unit=kg) and release it into the processed zone."""
    from backend.cli.main import context
    from backend.refine import quarantine as q

    corrections: dict[str, str] = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set '{item}' is not FIELD=VALUE")
        corrections[key.strip()] = value.strip()
    with context().db.connect("refiner") as conn:
        q.release(conn, _uuid(quarantine_id, "quarantine id"), corrections, note)
    console.print(f"released {quarantine_id}")


@quarantine_app.command("reject")
def quarantine_reject(
    quarantine_id: str, note: Annotated[str | None, typer.Option(help="why")] = None
) -> None:
    """Reject a record for good (it stays in quarantine, marked rejected)."""
    from backend.cli.main import context
    from backend.refine import quarantine as q

    with context().db.connect("refiner") as conn:
        q.reject(conn, _uuid(quarantine_id, "quarantine id"), note)
    console.print(f"rejected {quarantine_id}")


def quality_cmd(ctx: StackContext, limit: int, as_json: bool) -> None:
    from backend.refine.quality import latest

    with ctx.db.connect("refiner") as conn:
        rows = latest(conn, limit=limit)
    if as_json:
        print_json([r.__dict__ for r in rows])
        return
    table = Table(title=f"Data quality (last {limit} batches)", title_justify="left")
    for col in (
        "batch",
        "format",
        "received",
        "complete",
        "valid",
        "duplicate",
        "late p50",
        "late p95",
        "refine lag",
    ):
        table.add_column(col, justify="left" if col in ("batch", "format", "received") else "right")
    for r in rows:
        table.add_row(
            str(r.batch_id)[:8],
            r.format,
            r.received_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"{r.completeness:.1%}",
            f"{r.validity_rate:.1%}",
            f"{r.duplicate_rate:.1%}",
            _duration(r.lateness_p50_s),
            _duration(r.lateness_p95_s),
            f"{r.refine_lag_s:.2f} s",
        )
    console.print(table)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


__all__ = ["ingest", "quality_cmd", "quarantine_app", "reconcile_cmd"]
