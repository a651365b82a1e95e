"""Authorisation with Casbin: deny by default, policies in the database, domains = regions.

Route-level checks only say whether a role may use an endpoint at all; which rows it may
see (a coach's own members, a researcher's consenting study members) is decided inside
each query, so a policy mistake cannot widen the rows a query returns."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import casbin
from sqlalchemy import Column, Integer, MetaData, String, create_engine, pool
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy_adapter import Adapter

from backend.exceptions import UserError
from backend.logs import get as get_logger

MODEL = Path(__file__).parent / "casbin" / "model.conf"
ROLES = ("member", "coach", "researcher", "steward", "admin", "auditor")

# The platform's baseline: (role, resource pattern, action); every region.
DEFAULT_POLICY: tuple[tuple[str, str, str], ...] = (
    ("member", "members/self/timeline", "read"),
    ("member", "members/self/consent", "read"),
    ("member", "members/self/consent", "write"),
    ("coach", "members/:member/timeline", "read"),
    ("coach", "members/:member/consent", "read"),
    ("researcher", "studies/:study/cohort-stats", "read"),
    ("researcher", "studies/:study/dataset", "read"),
    ("researcher", "studies", "read"),
    ("steward", "quarantine", "read"),
    ("steward", "quarantine", "write"),
    ("steward", "quality", "read"),
    ("auditor", "audit", "read"),
    ("admin", "policy", "*"),
    ("admin", "studies", "*"),
    ("admin", "studies/:study/researchers", "write"),
    ("admin", "studies/:study/close", "write"),
    ("admin", "assignments", "*"),
)


# What a rule may say. Subjects are Hub user names or roles; resources are keyMatch2
# patterns over the API's resource paths (`members/:member/timeline`).
RULE_PATTERNS = {
    "subject": r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$",
    "region": r"^(\*|[a-z][a-z0-9-]{0,31})$",
    "resource": r"^[a-z0-9*:][a-z0-9*:/_.-]{0,199}$",
    "action": r"^(read|write|\*)$",
}
# Without this rule nobody can administer the policy over the API any more.
LOCKOUT_GUARD = ("admin", "*", "policy", "*")


@dataclass(frozen=True)
class Rule:
    subject: str
    region: str
    resource: str
    action: str

    def __post_init__(self) -> None:
        for name, pattern in RULE_PATTERNS.items():
            if not re.fullmatch(pattern, getattr(self, name)):
                raise UserError(f"{name} '{getattr(self, name)}' does not match {pattern}")

    def as_tuple(self) -> tuple[str, str, str, str]:
        return (self.subject, self.region, self.resource, self.action)


class _Base(DeclarativeBase):
    metadata = MetaData(schema="governance")


class CasbinRule(_Base):
    """The adapter's table, in the governance schema (created by migration 0003)."""

    __tablename__ = "casbin_rule"
    id = Column(Integer, primary_key=True)
    ptype = Column(String(255))
    v0 = Column(String(255))
    v1 = Column(String(255))
    v2 = Column(String(255))
    v3 = Column(String(255))
    v4 = Column(String(255))
    v5 = Column(String(255))

    def __str__(self) -> str:
        # The adapter loads each rule by parsing str(row) as a policy line.
        values = [self.ptype, self.v0, self.v1, self.v2, self.v3, self.v4, self.v5]
        return ", ".join(str(v) for v in values if v is not None and v != "")


# Decisions remembered between reloads; bounded because resources name members.
log = get_logger(__name__)
_MEMO_ENTRIES = 50_000


@dataclass
class Policy:
    enforcer: casbin.SyncedEnforcer
    # pycasbin compiles and interprets its matcher for every rule on every decision (about
    # a millisecond with our baseline), and concurrent compiles in one process fail with
    # SystemError on CPython 3.11. So: one decision at a time, each remembered until the
    # policy is next loaded (a grant, a revoke, or the periodic reload).
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _memo: dict[tuple[tuple[str, ...], str, str, str], bool] = field(
        default_factory=dict, repr=False
    )
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @classmethod
    def open(cls, sqlalchemy_url: str, reload_seconds: float = 5.0) -> Policy:
        engine = create_engine(sqlalchemy_url, poolclass=pool.NullPool)
        adapter = Adapter(engine, db_class=CasbinRule, create_table=False)
        policy = cls(casbin.SyncedEnforcer(str(MODEL), adapter))
        # Other backend processes change policy too: reload it on a short interval, so a
        # revocation is in force everywhere within `reload_seconds`.
        if reload_seconds > 0:
            threading.Thread(
                target=policy._reload_every, args=(reload_seconds,), daemon=True
            ).start()
        return policy

    def _reload_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.reload()
            except Exception as e:  # the database may be away for a moment: keep going
                log.warning("policy reload failed", error=type(e).__name__)

    def close(self) -> None:
        self._stop.set()

    def allowed(
        self, user: str, roles: Iterable[str], region: str, resource: str, action: str
    ) -> bool:
        """True if the user, or any of the user's roles, is allowed; deny by default."""
        subjects = (user, *sorted(roles))
        key = (subjects, region, resource, action)
        with self._lock:
            decision = self._memo.get(key)
            if decision is None:
                decision = any(self.enforcer.enforce(s, region, resource, action) for s in subjects)
                if len(self._memo) >= _MEMO_ENTRIES:
                    self._memo.clear()
                self._memo[key] = decision
            return decision

    def grant(self, subject: str, region: str, resource: str, action: str) -> bool:
        with self._lock:
            self._memo.clear()
            return bool(self.enforcer.add_policy(subject, region, resource, action))

    def revoke(self, subject: str, region: str, resource: str, action: str) -> bool:
        with self._lock:
            self._memo.clear()
            return bool(self.enforcer.remove_policy(subject, region, resource, action))

    def change(self, rule: Rule, *, granted: bool) -> bool:
        """Grant or revoke one rule as stored now (not as this process last loaded it: other
        processes change the policy too); True if the policy changed."""
        if not granted and rule.as_tuple() == LOCKOUT_GUARD:
            raise UserError("refused: revoking it would leave nobody able to administer the policy")
        self.reload()
        if granted:
            return self.grant(*rule.as_tuple())
        return self.revoke(*rule.as_tuple())

    def rules(self) -> list[list[str]]:
        return [list(r) for r in self.enforcer.get_policy()]

    def _snapshot(self) -> tuple[list[list[str]], list[list[str]]]:
        return self.rules(), [list(r) for r in self.enforcer.get_grouping_policy()]

    def reload(self) -> None:
        # The periodic reload finds nothing new almost always: keep the memo then.
        before = self._snapshot()
        self.enforcer.load_policy()
        if self._snapshot() != before:
            with self._lock:
                self._memo.clear()


def seed_defaults(policy: Policy) -> int:
    """Install the baseline policy (idempotent); returns how many rules were added."""
    existing = {tuple(r) for r in policy.rules()}
    added = 0
    for role, resource, action in DEFAULT_POLICY:
        if (role, "*", resource, action) not in existing:
            added += policy.grant(role, "*", resource, action)
    return added
