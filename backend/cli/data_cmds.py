"""`rejuve ingest | reconcile | quarantine | quality | sources`: the data steward's commands.

`rejuve ingest` exits 0 when every record went in (or duplicated one already in), 1 when
the file landed but did not go in cleanly (records quarantined: the summary counts each
reason), and 2 when it was refused or could not be read at all."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec

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

if TYPE_CHECKING:
    # Data commands run on the read-only runtime, not the local stack.
    from backend.runtime import Runtime as StackContext

P = ParamSpec("P")

quarantine_app = typer.Typer(no_args_is_help=True, help="Review quarantined records.")


class NotClean(UserError):
    """The file landed, but not all of it went in: exit 1 (2 is for refused input)."""

    exit_code = 1


def sources_add(ctx: StackContext, name: str, rotate: bool, members: list[str]) -> None:
    from backend.api.api_keys import enrol, register
    from backend.ingest.landing import is_enrolled

    ids = [_uuid(m, "member") for m in members]
    with ctx.db.connect("owner") as conn:
        # Check the members before a key exists: a refused command leaves nothing behind.
        unknown = [m for m in ids if not is_enrolled(conn, m)]
        conn.rollback()
        if unknown:
            raise UserError(
                f"--member {unknown[0]} is not an enrolled member; enrol it first"
                " (`rejuve members add`)"
            )
        key = register(conn, name, rotate=rotate)
        added = enrol(conn, name, ids)
    console.print(f"API key for [bold]{name}[/] (shown once, store it now):")
    console.print(key, soft_wrap=True, highlight=False)
    if added or not ids:
        console.print(
            f"enrolled for {added} member(s)"
            if ids
            else "enrolled for no member yet: `rejuve sources enrol NAME --member UUID`"
        )


def sources_enrol(ctx: StackContext, name: str, members: list[str], remove: bool) -> None:
    from backend.api.api_keys import enrol, unenrol

    ids = [_uuid(m, "member") for m in members]
    with ctx.db.connect("owner") as conn:
        if remove:
            console.print(f"{name}: withdrew {unenrol(conn, name, ids)} enrolment(s)")
        else:
            n = enrol(conn, name, ids)
            console.print(f"{name}: enrolled for {n} more member(s) ({len(ids) - n} already)")


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise UserError(f"{what} '{value}' is not a UUID") from None


def _not_enrolled_in_one_line(command: Callable[P, None]) -> Callable[P, None]:
    """A member that is not enrolled is refused with what to do on the same line: the
    hint is not hidden behind -v. `--member:` names the option when the id came from it
    (a lab file split by member names its members in a column)."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        from backend.ingest.landing import NotEnrolled

        try:
            command(*args, **kwargs)
        except NotEnrolled as e:
            option = "--member: " if e.field == "member_id" else ""
            raise UserError(f"{option}{e}; {e.detail}") from None

    return run


@_not_enrolled_in_one_line
def ingest(
    ctx: StackContext,
    path: Path,
    fmt: str,
    member: str | None,
    source: str | None,
    batch_id: str | None,
    mapping: Path | None,
    timeout: float,
    enrol: bool = False,
    tz: str | None = None,
    schema: str | None = None,
) -> None:
    from backend.refine.files import ingest_file, ingest_multi_member_csv

    options = _mapping_options(mapping) if mapping else None
    if tz is not None:
        from backend.ingest.formats.registry import get as get_format

        if not get_format(fmt).local_times:
            raise UserError(f"--tz is for files of local times (fitbit), not {fmt}")
        options = {**(options or {}), "tz": tz}
    if schema is not None:
        if fmt != "omh":
            raise UserError("--schema is for --format omh (bare Open mHealth bodies)")
        from backend.ingest.formats.omh_registry import parse_schema_id

        try:
            parse_schema_id(schema)
        except ValueError as e:
            raise UserError(f"--schema: {e}") from None
        options = {"schema": schema}
    if member is None and fmt != "fhir":  # a FHIR bundle's Patient may name its member
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
                enrol=enrol,
            )
        lines = [r.line for r in results]
        console.print(f"{path.name}: {len(results)} members, one encrypted batch each")
        console.print(_reconcile_table(lines, title=f"{path.name}"))
        _verdict(lines)
        return
    member_id = _uuid(member, "member") if member is not None else None
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
            enrol=enrol,
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
    _verdict([line])


def _verdict(lines: list) -> None:  # type: ignore[type-arg]
    """Say whether the file went in cleanly: each quarantine reason with its count, and
    an exit status that tells a script (see the module docstring)."""
    from collections import Counter

    problems = [p for ln in lines for p in ln.problems]
    if problems:
        raise UserError("the file does not reconcile", "; ".join(problems))
    reasons: Counter[str] = Counter()
    for ln in lines:
        reasons.update(ln.reasons)
    quarantined = sum(ln.quarantined for ln in lines)
    duplicate = sum(ln.duplicate for ln in lines)
    processed = sum(ln.processed for ln in lines)
    if not quarantined:
        console.print(
            f"[green]went in cleanly[/]: {processed:,} processed, {duplicate:,} duplicate"
        )
        return
    console.print(
        "quarantined: "
        + ", ".join(f"{reason} {n:,}" for reason, n in reasons.most_common())
        + " (see `rejuve quarantine list --batch ID`)"
    )
    raise NotClean(
        f"the file did not go in cleanly: {quarantined:,} record(s) quarantined,"
        f" {processed:,} processed"
    )


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
    from backend.refine.reconcile import reconcile, resolve_batch

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
            batch=resolve_batch(conn, batch) if batch else None,
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
    failed = [b for b in result.batches if b.error]
    if failed:
        console.print(
            f"[red]failed: {len(failed)} batch(es) could not be refined[/] (kept in the raw"
            " zone; `rejuve reconcile --json` gives each reason)"
        )
    console.print(
        "[green]reconciled: nothing lost[/]" if result.ok else "[red]does NOT reconcile[/]"
    )
    return result.ok


@quarantine_app.command("list")
def quarantine_list(
    status: Annotated[str, typer.Option(help="open, released, rejected or all")] = "open",
    batch: Annotated[str | None, typer.Option(help="only this batch (id or unique prefix)")] = None,
    reason: Annotated[str | None, typer.Option(help="only this reason")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List quarantined records (newest first)."""
    from backend.cli.app import context
    from backend.refine import quarantine as q
    from backend.refine.reconcile import resolve_batch

    ctx = context()
    with ctx.db.connect("refiner") as conn:
        entries = q.list_entries(
            conn,
            status=None if status == "all" else status,
            batch=resolve_batch(conn, batch) if batch else None,
            reason=reason,
            limit=limit,
        )
    if as_json:
        print_json([e.__dict__ for e in entries])
        return
    table = Table(title=f"Quarantine ({status})", title_justify="left")
    # Whole ids, never folded or cut: `show`, `release` and `reject` take them (or any
    # unique prefix).
    table.add_column("id", no_wrap=True, min_width=36)
    for col in ("reason", "field", "where", "detail", "status"):
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


def _entry_id(conn: object, value: str) -> uuid.UUID:
    """A whole quarantine id, or any prefix of one that names exactly one entry."""
    from backend.refine import quarantine as q

    return q.resolve(conn, value)  # type: ignore[arg-type]


@quarantine_app.command("show")
def quarantine_show(
    quarantine_id: Annotated[str, typer.Argument(help="the id, or any unique prefix of it")],
) -> None:
    """Show one quarantined record in full."""
    from backend.cli.app import context
    from backend.refine import quarantine as q

    with context().db.connect("refiner") as conn:
        e = q.get(conn, _entry_id(conn, quarantine_id))
    print_json({**e.__dict__})


@quarantine_app.command("release")
def quarantine_release(
    quarantine_id: str,
    set_: Annotated[list[str] | None, typer.Option("--set", help="FIELD=VALUE correction")] = None,
    note: Annotated[str | None, typer.Option(help="why")] = None,
) -> None:
    """Correct a record (--set unit=kg) and release it into the processed zone."""
    from backend.cli.app import context
    from backend.refine import quarantine as q

    corrections: dict[str, str] = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set '{item}' is not FIELD=VALUE")
        corrections[key.strip()] = value.strip()
    with context().db.connect("refiner") as conn:
        q.release(conn, _entry_id(conn, quarantine_id), corrections, note)
    console.print(f"released {quarantine_id}")


@quarantine_app.command("reject")
def quarantine_reject(
    quarantine_id: str, note: Annotated[str | None, typer.Option(help="why")] = None
) -> None:
    """Reject a record for good (it stays in quarantine, marked rejected)."""
    from backend.cli.app import context
    from backend.refine import quarantine as q

    with context().db.connect("refiner") as conn:
        q.reject(conn, _entry_id(conn, quarantine_id), note)
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

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.1%}"

    for r in rows:
        table.add_row(
            str(r.batch_id),
            r.format,
            r.received_at.strftime("%Y-%m-%d %H:%M:%S"),
            "[red]failed[/]" if r.error else pct(r.completeness),
            pct(r.validity_rate),
            pct(r.duplicate_rate),
            _duration(r.lateness_p50_s),
            _duration(r.lateness_p95_s),
            f"{r.refine_lag_s:.2f} s",
        )
    console.print(table)
    failed = [r for r in rows if r.error]
    for r in failed:
        console.print(f"[red]failed[/] {r.batch_id}: {r.error}", highlight=False)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


__all__ = [
    "ingest",
    "quality_cmd",
    "quarantine_app",
    "reconcile_cmd",
    "sources_add",
    "sources_enrol",
]
