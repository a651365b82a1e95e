"""Prefect flows for files: thin wrappers over `backend.ingest` (tested on their own).

Device streams do not come through here: the refiner service takes them within seconds."""

from __future__ import annotations

import uuid
from pathlib import Path

from prefect import flow, get_run_logger

from backend.refine import dropbox
from backend.refine.files import ingest_file
from backend.runtime import Runtime


@flow(name="ingest-file")
def ingest_file_flow(path: str, fmt: str, member_id: str, enrol: bool = False) -> dict[str, object]:
    """Land and refine one file; returns its reconciliation line. `enrol`: enrol the member
    first if it is not enrolled yet (an explicit first ingest, as `rejuve ingest --enrol`);
    without it a member that is not enrolled fails the run and nothing lands."""
    ctx = Runtime.from_env()
    result = ingest_file(
        ctx.db,
        ctx.keystore(),
        path=Path(path),
        fmt=fmt,
        member_id=uuid.UUID(member_id),
        region=ctx.settings.region,
        source=f"flow:{fmt}",
        enrol=enrol,
    )
    line = result.line
    get_run_logger().info(
        "batch %s: parsed %d, processed %d, quarantined %d, duplicate %d",
        result.receipt.batch_id,
        line.parsed,
        line.processed,
        line.quarantined,
        line.duplicate,
    )
    return {
        "batch_id": str(result.receipt.batch_id),
        "parsed": line.parsed,
        "processed": line.processed,
        "quarantined": line.quarantined,
        "duplicate": line.duplicate,
        "error": line.error,
        "reconciled": line.ok,
    }


@flow(name="drop-folder")
def drop_folder_flow() -> list[dict[str, object]]:
    """Ingest every settled file in the drop folder."""
    ctx = Runtime.from_env()
    root = ctx.drop_dir
    dropbox.ensure(root)
    notes = [
        dropbox.process(ctx.db, ctx.keystore(), ctx.settings.region, root, item)
        for item in dropbox.scan(root)
    ]
    get_run_logger().info("drop folder: %d file(s) ingested", len(notes))
    return notes
