"""`rejuve ingest | reconcile | quality`: the data steward's top-level commands (their work
is done in `backend.cli.data_cmds`, imported when one runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backend.cli.app import app, runtime


@app.command()
def ingest(
    path: Annotated[
        Path, typer.Argument(help="the file to ingest (or the folder of an unpacked export)")
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="apple-health, fhir, omh, csv-lab, device-batch, fitbit, garmin, fit"
            " or health-connect",
        ),
    ],
    member: Annotated[
        str | None,
        typer.Option(
            help="the member the file belongs to (UUID); a csv-lab file without "
            "it is split by its member column"
        ),
    ] = None,
    source: Annotated[str | None, typer.Option(help="source name (default cli:FORMAT)")] = None,
    batch_id: Annotated[str | None, typer.Option(help="idempotency key: resending is safe")] = None,
    mapping: Annotated[Path | None, typer.Option(help="CSV column mapping (TOML)")] = None,
    schema: Annotated[
        str | None,
        typer.Option(help="omh: the schema of bare bodies (no header), e.g. omh:heart-rate:2.0"),
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for refinement")] = 600,
    enrol: Annotated[
        bool, typer.Option(help="enrol the file's members first if they are not enrolled yet")
    ] = False,
    tz: Annotated[
        str | None,
        typer.Option(
            "--tz",
            help="the IANA time zone the file's local times are in (e.g. Europe/Berlin); "
            "default: the member's (`rejuve members zone`)",
        ),
    ] = None,
) -> None:
    """Land a file in the raw zone (encrypted), refine it and show what became of it.
    Exit 0: every record went in (or was a duplicate); 1: some records were quarantined
    or the file could not be read (the summary says why); 2: nothing landed (bad input)."""
    from backend.cli.data_cmds import ingest as run_ingest
    from backend.ingest.folder import as_file

    # A folder is landed as one deterministic zip of itself: again, it is all duplicates.
    with as_file(path, fmt) as landed:
        run_ingest(
            runtime(), landed, fmt, member, source, batch_id, mapping, timeout, enrol, tz, schema
        )


@app.command()
def reconcile(
    batch: Annotated[str | None, typer.Option(help="one batch: its id or a unique prefix")] = None,
    since: Annotated[str | None, typer.Option(help="batches received since (ISO time)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    grace: Annotated[
        float,
        typer.Option(
            help="seconds a landed batch may wait for the refiner before it counts as missing"
        ),
    ] = 300,
) -> None:
    """Prove nothing was lost: parsed = processed + quarantined + duplicate, per batch."""
    from backend.cli.data_cmds import reconcile_cmd

    if not reconcile_cmd(runtime(), batch, since, as_json, grace):
        raise typer.Exit(1)


@app.command()
def quality(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Data-quality metrics per batch: completeness, validity, duplicates, lateness."""
    from backend.cli.data_cmds import quality_cmd

    quality_cmd(runtime(), limit, as_json)
