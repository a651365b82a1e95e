"""What governed routes share: pools per role, the policy, the identity validator, keys,
the audit writer and per-identity rate limits."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from psycopg_pool import ConnectionPool

from backend.db.access import DatabaseAccess
from backend.governance.audit_anchor import AnchorSigner
from backend.governance.audit_writer import AuditWriter
from backend.governance.policy import Policy, seed_defaults
from backend.keys.study_keys import StudyKeys


class Identity(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def roles(self) -> frozenset[str]: ...


class TokenValidator(Protocol):
    def validate(self, token: str) -> Identity | None: ...


class NoIdentity:
    """Until an identity provider is configured, nobody is anybody: deny by default."""

    def validate(self, token: str) -> Identity | None:
        return None


@dataclass
class RateLimiter:
    """A token bucket per identity: `rate` requests per second, bursts up to `burst`."""

    rate: float = 20.0
    burst: float = 40.0
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, who: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(who, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[who] = (tokens, now)
                return False
            self._buckets[who] = (tokens - 1, now)
            return True


def query_pool(db: DatabaseAccess, max_size: int = 16) -> ConnectionPool:
    """Connections for governed reads. Autocommit: each read is one statement (or a few
    independent ones), so BEGIN and ROLLBACK would be two extra round trips per query."""
    return ConnectionPool(
        db.conninfo("query"),
        min_size=2,
        max_size=max_size,
        open=True,
        name="query",
        kwargs={"autocommit": True},
    )


@dataclass
class GovernanceState:
    region: str
    query_pool: ConnectionPool
    backend_pool: ConnectionPool
    policy: Policy
    validator: TokenValidator
    study_keys: StudyKeys
    limiter: RateLimiter
    audit: AuditWriter

    @classmethod
    def open(
        cls,
        db: DatabaseAccess,
        validator: TokenValidator,
        study_keys: StudyKeys,
        region: str,
        limiter: RateLimiter | None = None,
        anchor: AnchorSigner | None = None,
    ) -> GovernanceState:
        policy = Policy.open(db.sqlalchemy_url("backend"))
        seed_defaults(policy)
        backend_pool = ConnectionPool(
            db.conninfo("backend"), min_size=2, max_size=8, open=True, name="backend"
        )
        return cls(
            region=region,
            query_pool=query_pool(db),
            backend_pool=backend_pool,
            policy=policy,
            validator=validator,
            study_keys=study_keys,
            limiter=limiter or RateLimiter(),
            audit=AuditWriter(backend_pool.connection, anchor),
        )

    def close(self) -> None:
        self.audit.close()
        self.policy.close()
        self.query_pool.close()
        self.backend_pool.close()
