"""What governed routes share: pools per role, the policy, the identity validator, keys,
the audit writer and per-identity rate limits."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from psycopg_pool import ConnectionPool

from backend.db.access import DatabaseAccess
from backend.exceptions import ServiceDown
from backend.governance.audit_anchor import AnchorSigner
from backend.governance.audit_writer import AuditWriter
from backend.governance.policy import Policy, seed_defaults
from backend.governance.studies import AccountDirectory
from backend.keys.study_keys import StudyKeys


class Identity(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def roles(self) -> frozenset[str]: ...


class TokenValidator(Protocol):
    def validate(self, token: str) -> Identity | None: ...

    def remembered(self, token: str) -> tuple[bool, Identity | None]:
        """(True, the answer) when the answer is known without asking anyone (no I/O: the
        guard calls it on the event loop), else (False, None)."""
        ...


class NoIdentity:
    """Until an identity provider is configured, nobody is anybody: deny by default."""

    def validate(self, token: str) -> Identity | None:
        return None

    def remembered(self, token: str) -> tuple[bool, Identity | None]:
        return True, None


class RateLimiter(Protocol):
    """Per-person and per-address request limits. `allow*` raise ServiceDown when the
    limits cannot be checked: the caller refuses the request (503) rather than serve it
    unlimited. Asynchronous: the guard checks them on the event loop, without a hop to a
    thread (a third of a governed request's CPU went to such hops)."""

    async def allow(self, who: str) -> bool: ...

    async def allow_anonymous(self, address: str) -> bool: ...


@dataclass(frozen=True)
class Rate:
    """`per_second` sustained, bursts up to `burst`: as a moving window, at most
    `amount` requests in any `seconds` (the burst's worth of the rate, at least 1 s)."""

    per_second: float
    burst: float

    @property
    def seconds(self) -> int:
        return max(1, math.ceil(self.burst / self.per_second))

    @property
    def amount(self) -> int:
        return max(1, round(self.per_second * self.seconds))

    def item(self) -> RateLimitItem:
        return RateLimitItemPerSecond(self.amount, self.seconds)


@dataclass
class SharedRateLimiter:
    """The limits kept in Redis (the `limits` library's moving window), so every backend
    worker process on every machine counts against the same window. Keys carry a hash
    of the person or address, not the name itself."""

    storage: RedisStorage
    person: Rate
    anonymous: Rate
    _strategy: MovingWindowRateLimiter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._strategy = MovingWindowRateLimiter(self.storage)
        self._items = {"person": self.person.item(), "address": self.anonymous.item()}

    @classmethod
    def open(
        cls, redis_url: str, ca_file: Path, person: Rate, anonymous: Rate
    ) -> SharedRateLimiter:
        # `limits` hands keyword options to redis-py's asyncio client: rediss:// plus our CA
        # verifies the server. Short timeouts: a Redis that does not answer refuses fast.
        storage = RedisStorage(
            "async+" + redis_url,
            implementation="redispy",
            key_prefix="rejuve-rate",
            wrap_exceptions=True,
            ssl_ca_certs=str(ca_file),
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
        )
        return cls(storage, person, anonymous)

    async def _hit(self, kind: str, who: str) -> bool:
        key = hashlib.blake2b(who.encode(), digest_size=12).hexdigest()
        try:
            return await self._strategy.hit(self._items[kind], kind, key)
        except StorageError as e:
            raise ServiceDown("the rate limit store (Redis) is unavailable") from e

    async def allow(self, who: str) -> bool:
        return await self._hit("person", who)

    async def allow_anonymous(self, address: str) -> bool:
        return await self._hit("address", address)


@dataclass
class LocalRateLimiter:
    """The same windows in this process's memory: for a backend without Redis (tests of
    the app object). Several workers would each count on their own."""

    person: Rate = Rate(20.0, 40.0)
    anonymous: Rate = Rate(20.0, 100.0)
    _strategy: MovingWindowRateLimiter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._strategy = MovingWindowRateLimiter(MemoryStorage())

    async def allow(self, who: str) -> bool:
        return await self._strategy.hit(self.person.item(), "person", who)

    async def allow_anonymous(self, address: str) -> bool:
        return await self._strategy.hit(self.anonymous.item(), "address", address)


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
    # Who has an account (the Hub's store locally; the identity provider in production):
    # a study membership for a name nobody holds would pass to whoever gets it next.
    accounts: AccountDirectory | None = None

    @classmethod
    def open(
        cls,
        db: DatabaseAccess,
        validator: TokenValidator,
        study_keys: StudyKeys,
        region: str,
        limiter: RateLimiter | None = None,
        anchor: AnchorSigner | None = None,
        query_connections: int = 16,
        accounts: AccountDirectory | None = None,
    ) -> GovernanceState:
        """Everything one backend process needs. Run as several worker processes, each
        opens its own pools, policy (with its own change listener), audit writer and
        token cache; what they must share (the rate limits) lives in Redis."""
        policy = Policy.open(db.sqlalchemy_url("backend"), regions=(region,))
        seed_defaults(policy)
        backend_pool = ConnectionPool(
            db.conninfo("backend"), min_size=2, max_size=8, open=True, name="backend"
        )
        return cls(
            region=region,
            query_pool=query_pool(db, query_connections),
            backend_pool=backend_pool,
            policy=policy,
            validator=validator,
            study_keys=study_keys,
            limiter=limiter or LocalRateLimiter(),
            audit=AuditWriter(backend_pool.connection, anchor),
            accounts=accounts,
        )

    def close(self) -> None:
        self.audit.close()
        self.policy.close()
        # The limiter's Redis connections belong to the worker's event loop and end with it.
        self.query_pool.close()
        self.backend_pool.close()
