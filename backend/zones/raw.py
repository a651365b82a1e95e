"""Landing payloads in the raw zone: append-only, exactly the bytes received."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg


@dataclass(frozen=True)
class Payload:
    source: str
    content_type: str
    body: bytes = field(repr=False)
    region: str
    member_id: uuid.UUID | None = None

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.body).digest()


def land(
    conn: psycopg.Connection, payloads: Sequence[Payload], batch_id: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """Insert payloads as one batch in the caller's transaction; returns their record ids.

    Uses COPY: the ingest role may INSERT, and COPY FROM needs nothing more."""
    batch = batch_id or uuid.uuid4()
    ids = [uuid.uuid4() for _ in payloads]
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY raw.records (record_id, source, content_type, payload, digest, member_id, region,"
            " batch_id) FROM STDIN"
        ) as copy,
    ):
        for rid, p in zip(ids, payloads, strict=True):
            copy.write_row(
                (rid, p.source, p.content_type, p.body, p.digest, p.member_id, p.region, batch)
            )
    return ids
