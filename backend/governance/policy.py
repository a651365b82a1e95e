"""Authorisation with Casbin: deny by default, policies in the database, domains = regions.

Route-level checks only say whether a role may use an endpoint at all; which rows it may
see (a coach's own members, a researcher's consenting study members) is decided inside
each query, so a policy mistake cannot widen the rows a query returns."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import casbin
from sqlalchemy import Column, Integer, MetaData, String, create_engine, pool
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy_adapter import Adapter

from backend.exceptions import UserError

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


@dataclass
class Policy:
    enforcer: casbin.SyncedEnforcer

    @classmethod
    def open(cls, sqlalchemy_url: str, reload_seconds: float = 5.0) -> Policy:
        engine = create_engine(sqlalchemy_url, poolclass=pool.NullPool)
        adapter = Adapter(engine, db_class=CasbinRule, create_table=False)
        enforcer = casbin.SyncedEnforcer(str(MODEL), adapter)
        # Other backend processes change policy too: reload it on a short interval, so a
        # revocation is in force everywhere within `reload_seconds`.
        if reload_seconds > 0:
            enforcer.start_auto_load_policy(reload_seconds)
        return cls(enforcer)

    def close(self) -> None:
        if self.enforcer.is_auto_loading_running():
            self.enforcer.stop_auto_load_policy()

    def allowed(
        self, user: str, roles: Iterable[str], region: str, resource: str, action: str
    ) -> bool:
        """True if the user, or any of the user's roles, is allowed; deny by default."""
        subjects = [user, *roles]
        return any(self.enforcer.enforce(s, region, resource, action) for s in subjects)

    def grant(self, subject: str, region: str, resource: str, action: str) -> bool:
        return bool(self.enforcer.add_policy(subject, region, resource, action))

    def revoke(self, subject: str, region: str, resource: str, action: str) -> bool:
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

    def reload(self) -> None:
        self.enforcer.load_policy()


def seed_defaults(policy: Policy) -> int:
    """Install the baseline policy (idempotent); returns how many rules were added."""
    existing = {tuple(r) for r in policy.rules()}
    added = 0
    for role, resource, action in DEFAULT_POLICY:
        if (role, "*", resource, action) not in existing:
            added += policy.grant(role, "*", resource, action)
    return added
