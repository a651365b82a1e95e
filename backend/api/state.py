"""What the app holds for its lifetime: connection pools and the key store."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import ConnectionPool

from backend.db.access import DatabaseAccess
from backend.keys.keystore import KeyStore


@dataclass
class AppState:
    db: DatabaseAccess
    keys: KeyStore
    region: str
    ingest_pool: ConnectionPool
    max_batch_bytes: int

    @classmethod
    def open(
        cls, db: DatabaseAccess, keys: KeyStore, region: str, max_batch_bytes: int = 8 * 1024 * 1024
    ) -> AppState:
        pool = ConnectionPool(
            db.conninfo("ingest"), min_size=2, max_size=16, open=True, name="ingest"
        )
        return cls(db, keys, region, pool, max_batch_bytes)

    def close(self) -> None:
        self.ingest_pool.close()
