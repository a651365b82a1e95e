"""API keys for machine clients (ingestion sources): random, shown once, stored hashed.

A key looks like `rk_<prefix>_<secret>`. The prefix finds the row; the secret is
compared by SHA-256 in constant time. Keys carry 256 bits of randomness, so a fast
hash is enough (no password stretching needed, unlike human passwords)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from backend.exceptions import UserError


@dataclass(frozen=True)
class SourceKey:
    source: str
    scopes: tuple[str, ...]


def new_key() -> tuple[str, str, bytes]:
    """Returns (full key to hand out once, prefix, hash to store)."""
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    return f"rk_{prefix}_{secret}", prefix, hashlib.sha256(secret.encode()).digest()


_INSERT = (
    "insert into governance.sources (source, key_hash, key_prefix, scopes) values (%s, %s, %s, %s)"
)
_UPSERT = (
    _INSERT + " on conflict (source) do update set key_hash = excluded.key_hash,"
    " key_prefix = excluded.key_prefix, scopes = excluded.scopes, revoked_at = null"
)


def register(
    conn: psycopg.Connection,
    source: str,
    scopes: tuple[str, ...] = ("ingest",),
    rotate: bool = False,
) -> str:
    """A new key for `source`. With rotate, an existing source gets a new key and its old
    one stops working at once."""
    key, prefix, digest = new_key()
    try:
        conn.execute(_UPSERT if rotate else _INSERT, (source, digest, prefix, list(scopes)))
    except psycopg.errors.UniqueViolation:
        raise UserError(
            f"source '{source}' is already registered",
            "use `rejuve sources add --rotate` to issue a new key",
        ) from None
    conn.commit()
    return key


def enrol(conn: psycopg.Connection, source: str, members: Iterable[uuid.UUID]) -> int:
    """Enrol a source (a device, an app) for members: its key may land their data and no
    one else's. Returns how many enrolments are new. Members must be enrolled themselves."""
    members = list(dict.fromkeys(members))
    if not members:
        return 0
    known = {
        r[0]
        for r in conn.execute(
            "select member_id from governance.members where member_id = any(%s)", (members,)
        ).fetchall()
    }
    unknown = [m for m in members if m not in known]
    if unknown:
        conn.rollback()
        raise UserError(
            f"--member {unknown[0]} is not an enrolled member"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
            "enrol members first: `rejuve members add`",
        )
    if (
        conn.execute("select 1 from governance.sources where source = %s", (source,)).fetchone()
        is None
    ):
        conn.rollback()
        raise UserError(f"no source '{source}'", "register it: `rejuve sources add NAME`")
    with conn.cursor() as cur:
        cur.executemany(
            "insert into governance.source_members (source, member_id) values (%s, %s)"
            " on conflict do nothing",
            [(source, m) for m in members],
        )
        added = cur.rowcount
    conn.commit()
    return max(added, 0)


def unenrol(conn: psycopg.Connection, source: str, members: Iterable[uuid.UUID]) -> int:
    n = conn.execute(
        "delete from governance.source_members where source = %s and member_id = any(%s)",
        (source, list(members)),
    ).rowcount
    conn.commit()
    return n


def enrolled(conn: psycopg.Connection, source: str) -> list[uuid.UUID]:
    rows = conn.execute(
        "select member_id from governance.source_members where source = %s order by enrolled_at",
        (source,),
    ).fetchall()
    conn.rollback()
    return [r[0] for r in rows]


def revoke(conn: psycopg.Connection, source: str) -> bool:
    n = conn.execute(
        "update governance.sources set revoked_at = now() where source = %s and revoked_at is null",
        (source,),
    ).rowcount
    conn.commit()
    return n > 0


_DUMMY = hashlib.sha256(b"no such key").digest()


def verify(conn: psycopg.Connection, presented: str) -> SourceKey | None:
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "rk":
        return None
    _, prefix, secret = parts
    row = conn.execute(
        "select source, key_hash, scopes from governance.sources"
        " where key_prefix = %s and revoked_at is null",
        (prefix,),
    ).fetchone()
    conn.rollback()
    digest = hashlib.sha256(secret.encode()).digest()
    # Compare even when the prefix is unknown, so timing does not tell which prefixes exist.
    stored = row[1] if row else _DUMMY
    if not hmac.compare_digest(digest, stored) or row is None:
        return None
    return SourceKey(row[0], tuple(row[2]))
