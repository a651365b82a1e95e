"""API keys for machine clients (ingestion sources): random, shown once, stored hashed.

A key looks like `rk_<prefix>_<secret>`. The prefix finds the row; the secret is
compared by SHA-256 in constant time. Keys carry 256 bits of randomness, so a fast
hash is enough (no password stretching needed, unlike human passwords)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
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
