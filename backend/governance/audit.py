"""The audit trail: one record per request, allowed or denied, hash-chained in the database.

`append` goes through `governance.audit_append`, which takes the chain's lock, links the
new row to the last one and writes it; nobody can insert around it (the backend role has
no INSERT on the table). `verify` recomputes every hash in order and names each record
that was edited, deleted or moved. The chain alone cannot tell a rewritten or truncated
tail from the real one: `audit_anchor.py` checks it against heads signed outside the
database, and `protections.py` checks that the append-only triggers are still in place."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg


@dataclass(frozen=True)
class AuditEvent:
    actor: str
    action: str
    resource: str
    outcome: str  # allowed | denied | error
    role: str | None = None
    purpose: str | None = None
    study: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    row_count: int | None = None
    status: int | None = None
    latency_ms: float | None = None
    client: str | None = None
    request_id: uuid.UUID = field(default_factory=uuid.uuid4)


_MAX_TEXT = 500


def _clean(value: Any) -> Any:
    """What jsonb can store and an auditor can read: no NUL, no lone surrogates (both are
    refused by PostgreSQL, and requests carry whatever a client sends), strings capped."""
    if isinstance(value, str):
        text = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
        return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"
    if isinstance(value, Mapping):
        return {_clean(str(k)): _clean(v) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in list(value)[:50]]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def append_sql(e: AuditEvent) -> tuple[str, tuple[object, ...]]:
    """The statement that appends `e` to the chain, and its parameters."""
    return (
        "select governance.audit_append(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            e.request_id,
            _clean(e.actor),
            e.role,
            e.purpose,
            _clean(e.study),
            e.action,
            _clean(e.resource),
            json.dumps(_clean(dict(e.params)), default=str, sort_keys=True),
            e.row_count,
            e.outcome,
            e.status,
            e.latency_ms,
            e.client,
        ),
    )


def append(conn: psycopg.Connection, e: AuditEvent) -> int:
    """Write one record in its own transaction (the chain lock is held only that long).
    The backend batches its records instead (audit_writer.py)."""
    with conn.transaction():
        row = conn.execute(*append_sql(e)).fetchone()
    assert row is not None
    return int(row[0])


@dataclass
class Verification:
    checked: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# The hash is recomputed here rather than by calling governance.audit_hash: the database
# owner can replace that function with one that agrees with whatever is stored. Built-ins
# are named by schema (and the search path pinned) so no look-alike can stand in.
_VERIFY = """
select seq, prev_hash, hash,
       pg_catalog.sha256(prev_hash OPERATOR(pg_catalog.||) pg_catalog.convert_to(
           pg_catalog.jsonb_build_array(
               seq, pg_catalog.to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               request_id, actor, role, purpose, study, action, resource, params, row_count,
               outcome, status, latency_ms, client)::text, 'UTF8')) as recomputed
  from governance.audit_log order by seq
"""


def verify(conn: psycopg.Connection, limit_problems: int = 20) -> Verification:
    """Walk the chain: every row's hash must match its content, link to the previous row's
    hash, and follow it without a gap in the sequence."""
    result = Verification()
    expected_prev = b""
    expected_seq = 1
    with conn.transaction(), conn.cursor(name="audit_verify") as cur:
        conn.execute("set local search_path = pg_catalog, pg_temp")
        # A server-side cursor: the log grows without bound.
        cur.itersize = 10_000
        cur.execute(_VERIFY)
        for seq, prev, stored, recomputed in cur:
            result.checked += 1
            if seq != expected_seq:
                result.problems.append(
                    (seq, f"records {expected_seq}..{seq - 1} are missing (deleted)")
                )
            elif bytes(prev) != expected_prev:
                result.problems.append(
                    (seq, "does not link to the record before it (deleted, inserted or moved)")
                )
            if bytes(stored) != bytes(recomputed):
                result.problems.append((seq, "content does not match its hash (edited)"))
            expected_prev = bytes(stored)
            expected_seq = seq + 1
            if len(result.problems) >= limit_problems:
                break
    return result


@dataclass(frozen=True)
class Record:
    """One audit record as an auditor reads it (the hashes are for `verify`)."""

    seq: int
    at: dt.datetime
    request_id: uuid.UUID
    actor: str
    role: str | None
    purpose: str | None
    study: str | None
    action: str
    resource: str
    params: dict[str, Any]
    row_count: int | None
    outcome: Literal["allowed", "denied", "error"]
    status: int | None
    latency_ms: float | None
    client: str | None


@dataclass(frozen=True)
class Search:
    """Every given field must match; `resource_prefix` matches the start of the resource;
    `before` (a seq) continues a listing: keyset pagination, newest first."""

    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    resource_prefix: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    request_id: uuid.UUID | None = None
    before: int | None = None
    limit: int = 100


_SEARCH = """
select seq, at, request_id, actor, role, purpose, study, action, resource, params, row_count,
       outcome, status, latency_ms, client
  from governance.audit_log
 where (%(actor)s::text is null or actor = %(actor)s)
   and (%(action)s::text is null or action = %(action)s)
   and (%(outcome)s::text is null or outcome = %(outcome)s)
   and (%(resource_prefix)s::text is null or starts_with(resource, %(resource_prefix)s))
   and (%(since)s::timestamptz is null or at >= %(since)s)
   and (%(until)s::timestamptz is null or at < %(until)s)
   and (%(request_id)s::uuid is null or request_id = %(request_id)s)
   and (%(before)s::bigint is null or seq < %(before)s)
 order by seq desc
 limit %(limit)s
"""


def search(conn: psycopg.Connection, s: Search) -> list[Record]:
    rows = conn.execute(_SEARCH, s.__dict__).fetchall()
    conn.rollback()
    return [Record(*r) for r in rows]
