"""Landing a batch in the raw zone: encrypted parts + manifest, committed together.

The commit is the acknowledgement: once `land` returns, the batch is durable (PostgreSQL
fsyncs the commit) and the refiner has been notified. A client batch id seen before
returns the earlier batch and lands nothing new, if the content is the same; the same id
with other content is refused (BatchConflict), never silently dropped.

Data lands only for members enrolled in `governance.members` (a typo in a member id must
not create orphan data with a data key of its own), and a source's key only for the
members the source is enrolled for (`governance.source_members`, see `may_write`).

This is the only landing path: every raw record is sealed under its member's data key."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import psycopg
from psycopg import errors
from psycopg.pq import TransactionStatus

from backend.exceptions import UserError
from backend.ingest.formats.registry import get as get_format
from backend.ingest.time_zones import with_zone
from backend.keys import envelope
from backend.keys.keystore import KeyStore

PART_SIZE = 4 * 1024 * 1024
NOTIFY_CHANNEL = "raw_landed"


class NotEnrolled(UserError):
    """The member is not enrolled, or the source is not enrolled for the member."""

    def __init__(self, message: str, detail: str | None = None, *, field: str) -> None:
        super().__init__(message, detail)
        self.field = field


class BatchConflict(UserError):
    """A client batch id seen before, with other content."""


@dataclass(frozen=True)
class Receipt:
    batch_id: uuid.UUID
    records: int
    bytes: int
    replayed: bool  # the client batch id was already landed: nothing new was written
    digest: builtins.bytes = b""  # SHA-256 of the content (`bytes` above is its size)


def _existing(
    conn: psycopg.Connection,
    source: str,
    client_batch_id: str | None,
) -> Receipt | None:
    if client_batch_id is None:
        return None
    row = conn.execute(
        "select batch_id, record_count, byte_count, digest from raw.batches"
        " where source = %s and client_batch_id = %s",
        (source, client_batch_id),
    ).fetchone()
    return Receipt(row[0], row[1], row[2], replayed=True, digest=row[3]) if row else None


def _same_content(earlier: Receipt, data: BinaryIO, client_batch_id: str | None) -> Receipt:
    whole = hashlib.sha256()
    while chunk := data.read(PART_SIZE):
        whole.update(chunk)
    if whole.digest() != earlier.digest:
        raise BatchConflict(
            f"batch id '{client_batch_id}' was landed before with other content",
            "a batch id names one batch: send new content under a new batch id",
        )
    return earlier


def is_enrolled(conn: psycopg.Connection, member_id: uuid.UUID) -> bool:
    row = conn.execute(
        "select 1 from governance.members where member_id = %s", (member_id,)
    ).fetchone()
    return row is not None


def may_write(conn: psycopg.Connection, source: str, member_id: uuid.UUID) -> bool:
    """The source is enrolled for the member (`rejuve sources enrol`)."""
    row = conn.execute(
        "select 1 from governance.source_members where source = %s and member_id = %s",
        (source, member_id),
    ).fetchone()
    conn.rollback()
    return row is not None


def check_enrolled(conn: psycopg.Connection, member_id: uuid.UUID) -> None:
    enrolled = is_enrolled(conn, member_id)
    conn.rollback()
    if not enrolled:
        raise NotEnrolled(
            f"member {member_id} is not enrolled",
            "enrol the member first (`rejuve members add`), or pass --enrol to enrol on"
            " this first ingest",
            field="member_id",
        )


def land(
    conn: psycopg.Connection,
    keys: KeyStore,
    *,
    source: str,
    fmt: str,
    member_id: uuid.UUID,
    region: str,
    data: BinaryIO,
    file_name: str | None = None,
    client_batch_id: str | None = None,
    parse_options: Mapping[str, Any] | None = None,
    progress: Callable[[int], None] = lambda _: None,
) -> Receipt:
    """Land `data` (streamed in parts) as one batch. Commits; returns the receipt.

    The connection must have no transaction open: the commit here is the acknowledgement,
    and must not be folded into (or rolled back with) a caller's transaction."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise RuntimeError("land() needs a connection with no transaction open")
    content_type = get_format(fmt).content_type
    earlier = _existing(conn, source, client_batch_id)
    conn.rollback()  # end the read-only check; the landing below is its own transaction
    if earlier:
        return _same_content(earlier, data, client_batch_id)
    check_enrolled(conn, member_id)
    parse_options = with_zone(conn, get_format(fmt), member_id, parse_options)
    key = keys.get_or_create(member_id)
    batch_id = uuid.uuid4()
    whole = hashlib.sha256()
    parts = total = 0
    try:
        with conn.transaction():
            with conn.cursor().copy(
                "COPY raw.records (record_id, source, content_type, payload, digest, member_id,"
                " region, batch_id, part_no, key_id) FROM STDIN"
            ) as copy:
                while chunk := data.read(PART_SIZE):
                    whole.update(chunk)
                    rid = uuid.uuid4()
                    copy.write_row(
                        (
                            rid,
                            source,
                            content_type,
                            envelope.seal(key.key, chunk, rid, member_id),
                            hashlib.sha256(chunk).digest(),
                            member_id,
                            region,
                            batch_id,
                            parts,
                            key.key_id,
                        )
                    )
                    parts += 1
                    total += len(chunk)
                    progress(len(chunk))
            conn.execute(
                "insert into raw.batches (batch_id, source, client_batch_id, format, file_name,"
                " member_id, parse_options, record_count, byte_count, digest)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    batch_id,
                    source,
                    client_batch_id,
                    fmt,
                    file_name,
                    member_id,
                    json.dumps(dict(parse_options or {})),
                    parts,
                    total,
                    whole.digest(),
                ),
            )
            conn.execute("select pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(batch_id)))
    except errors.UniqueViolation:
        # A concurrent request with the same client batch id committed first.
        again = _existing(conn, source, client_batch_id)
        conn.rollback()
        if again is None:
            raise
        if again.digest != whole.digest():
            raise BatchConflict(
                f"batch id '{client_batch_id}' was landed at the same time with other content"
            ) from None
        return again
    return Receipt(batch_id, parts, total, replayed=False, digest=whole.digest())


def land_bytes(conn: psycopg.Connection, keys: KeyStore, *, body: bytes, **kw: Any) -> Receipt:
    return land(conn, keys, data=io.BytesIO(body), **kw)
