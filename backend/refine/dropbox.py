"""A watched drop folder for batch files: `<drop>/<format>/<member uuid>/<file>`.

Each file found (and no longer being written) is ingested, then moved to `done/` with a
receipt, or to `failed/` with the reason beside it. Nothing is deleted."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from backend.db.access import DatabaseAccess
from backend.exceptions import UserError
from backend.ingest.formats.registry import FORMATS
from backend.keys.keystore import KeyStore
from backend.refine.files import ingest_file

# A file modified this recently may still be being copied in.
SETTLE_SECONDS = 5.0


@dataclass(frozen=True)
class DropItem:
    path: Path
    fmt: str
    member_id: uuid.UUID

    def relative(self, root: Path) -> Path:
        return self.path.relative_to(root)


def ensure(root: Path) -> None:
    # Members' files wait here: for the stack's eyes only.
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    for fmt in FORMATS:
        (root / fmt).mkdir(parents=True, exist_ok=True)


def scan(root: Path, now: float | None = None) -> list[DropItem]:
    now = now or time.time()
    items = []
    for fmt in FORMATS:
        for path in sorted((root / fmt).glob("*/*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            if now - path.stat().st_mtime < SETTLE_SECONDS:
                continue
            try:
                member = uuid.UUID(path.parent.name)
            except ValueError:
                continue  # reported by `process` callers as misplaced? keep it simple: skip
            items.append(DropItem(path, fmt, member))
    return items


def _move(root: Path, item: DropItem, outcome: str, note: dict[str, object]) -> Path:
    target = root / outcome / item.relative(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target = target.with_name(f"{target.stem}.{int(time.time())}{target.suffix}")
    item.path.rename(target)
    target.with_name(target.name + ".json").write_text(json.dumps(note, indent=2, default=str))
    return target


def process(
    db: DatabaseAccess, keys: KeyStore, region: str, root: Path, item: DropItem
) -> dict[str, object]:
    """Ingest one dropped file; returns a summary (also written beside the moved file)."""
    try:
        result = ingest_file(
            db,
            keys,
            path=item.path,
            fmt=item.fmt,
            member_id=item.member_id,
            region=region,
            source=f"drop:{item.fmt}",
        )
    except UserError as e:
        note: dict[str, object] = {"file": str(item.relative(root)), "error": str(e)}
        _move(root, item, "failed", note)
        return note
    line = result.line
    note = {
        "file": str(item.relative(root)),
        "batch_id": str(result.receipt.batch_id),
        "error": line.error,
        "parsed": line.parsed,
        "processed": line.processed,
        "quarantined": line.quarantined,
        "duplicate": line.duplicate,
        "unmapped": line.unmapped,
        "reconciled": line.ok,
    }
    _move(root, item, "failed" if line.error else "done", note)
    return note
