"""Splitting a multi-member CSV lab file into one part per member before landing.

Raw payloads are encrypted under one member's key, so that erasing a member can destroy
exactly their data. A lab file with rows of many members is therefore landed as one batch
per member: the header line plus that member's lines, byte for byte as received. Rows are
told apart by the mapping's member column; a row whose member is not a platform member id
stops the whole file before anything lands, with the line that is wrong."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backend.exceptions import UserError
from backend.ingest.formats.csv_lab import CsvMapping


def split_csv(path: Path, options: Mapping[str, Any] | None) -> dict[uuid.UUID, bytes]:
    mapping = CsvMapping.from_dict(dict(options)) if options else CsvMapping.default()
    raw = path.read_bytes()
    lines = raw.splitlines(keepends=True)
    if not lines:
        raise UserError(f"{path.name}: the file is empty")
    text_lines = [
        ln.decode("utf-8-sig" if i == 0 else "utf-8", errors="replace")
        for i, ln in enumerate(lines)
    ]
    reader = csv.reader(io.StringIO("".join(text_lines)), delimiter=mapping.delimiter)
    header = next(reader)
    try:
        column = [h.strip() for h in header].index(mapping.member_id)
    except ValueError:
        raise UserError(
            f"{path.name} line 1: no '{mapping.member_id}' column to tell the members apart",
            "pass --member if the file has one member",
        ) from None
    parts: dict[uuid.UUID, list[bytes]] = {}
    start = reader.line_num  # lines consumed so far (the header may span lines)
    head = b"".join(lines[:start])
    for row in reader:
        end = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            start = end
            continue
        cell = row[column].strip() if column < len(row) else ""
        try:
            member = uuid.UUID(cell)
        except ValueError:
            raise UserError(
                f"{path.name} line {start + 1}: member '{cell}' is not a platform member id (UUID)"
            ) from None
        parts.setdefault(member, []).append(b"".join(lines[start:end]))
        start = end
    return {member: head + b"".join(rows) for member, rows in parts.items()}
