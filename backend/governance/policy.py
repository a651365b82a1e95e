"""Authorisation with Casbin: deny by default, policies in the database, domains = regions.

Users and roles live in separate namespaces: a rule's subject is `user:<Hub name>` or
`role:<role>`, and a request asks for `user:<name>` and `role:<r>` for each of the user's
roles. A Hub user called `auditor` is `user:auditor` and gets nothing the role has.

Route-level checks only say whether a role may use an endpoint at all; which rows it may
see (a coach's own members, a researcher's consenting study members) is decided inside
each query (`backend.query.row_rules`), so a policy mistake cannot widen the rows a query
returns."""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import casbin
import psycopg
from casbin.util import key_match2
from sqlalchemy import Column, Integer, MetaData, String, create_engine, pool, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy_adapter import Adapter

from backend.exceptions import UserError
from backend.logs import get as get_logger

MODEL = Path(__file__).parent / "casbin" / "model.conf"
ROLES = ("member", "coach", "researcher", "steward", "admin", "auditor")
USER_PREFIX = "user:"
ROLE_PREFIX = "role:"

# The platform's baseline: (role, resource pattern, action); every region.
DEFAULT_POLICY: tuple[tuple[str, str, str], ...] = (
    ("member", "members/self/timeline", "read"),
    ("member", "members/self/consent", "read"),
    ("member", "members/self/consent", "write"),
    ("member", "members/self/features", "read"),
    ("member", "members/self/alerts", "read"),
    ("member", "members/self/labs", "read"),
    ("member", "members/self/daily", "read"),
    ("coach", "members/:member/timeline", "read"),
    ("coach", "members/:member/consent", "read"),
    ("coach", "members/:member/features", "read"),
    ("coach", "feature-views", "read"),
    ("coach", "coach/triage", "read"),
    ("coach", "members/:member/alerts", "read"),
    ("coach", "members/:member/labs", "read"),
    ("coach", "members/:member/daily", "read"),
    ("coach", "alerts/:alert/acknowledge", "write"),
    ("coach", "alerts/:alert/dismiss", "write"),
    ("researcher", "studies/:study/cohort-stats", "read"),
    ("researcher", "studies/:study/dataset", "read"),
    ("researcher", "studies/:study/training-set", "read"),
    ("researcher", "studies", "read"),
    ("researcher", "feature-views", "read"),
    ("steward", "quarantine", "read"),
    ("steward", "quarantine", "write"),
    ("steward", "quality", "read"),
    ("auditor", "audit", "read"),
    ("admin", "policy", "*"),
    ("admin", "studies", "*"),
    ("admin", "studies/:study/researchers", "write"),
    ("admin", "studies/:study/close", "write"),
    ("admin", "studies/:study/access-level", "write"),
    ("admin", "assignments", "*"),
)

# What a role may ever be granted (in some region, with some action): the resources of
# its job. An admin who grants `role:coach` a study's dataset is refused; a person who
# needs more than their role gives is granted it as `user:<name>`, visibly.
ROLE_RESOURCES: dict[str, frozenset[str]] = {
    "member": frozenset(
        {
            "members/self/timeline",
            "members/self/consent",
            "members/self/features",
            "members/self/alerts",
            "members/self/labs",
            "members/self/daily",
        }
    ),
    "coach": frozenset(
        {
            "members/:member/timeline",
            "members/:member/consent",
            "members/:member/features",
            "feature-views",
            "coach/triage",
            "members/:member/alerts",
            "members/:member/labs",
            "members/:member/daily",
            "alerts/:alert/acknowledge",
            "alerts/:alert/dismiss",
        }
    ),
    "researcher": frozenset(
        {
            "studies",
            "studies/:study/cohort-stats",
            "studies/:study/dataset",
            "studies/:study/training-set",
            "feature-views",
        }
    ),
    "steward": frozenset({"quarantine", "quality"}),
    "auditor": frozenset({"audit"}),
    "admin": frozenset(
        {
            "policy",
            "studies",
            "studies/:study/researchers",
            "studies/:study/close",
            "studies/:study/access-level",
            "assignments",
        }
    ),
}

# The resources some route has: a rule for anything else could never match a request.
KNOWN_RESOURCES: frozenset[str] = frozenset(r for _, r, _ in DEFAULT_POLICY)

_NAME = r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}"
# A Hub user name (coaches, researchers): what an identity provider may call a person.
USER_NAME_PATTERN = rf"^{_NAME}$"
# What a rule may say. Resources are keyMatch2 patterns over the API's resource paths
# (`members/:member/timeline`).
RULE_PATTERNS = {
    "subject": rf"^(user|role):{_NAME}$",
    "region": r"^(\*|[a-z][a-z0-9-]{0,31})$",
    "resource": r"^[a-z0-9*:][a-z0-9*:/_.-]{0,199}$",
    "action": r"^(read|write|\*)$",
}
# Without this rule nobody can administer the policy over the API any more.
LOCKOUT_GUARD = (f"{ROLE_PREFIX}admin", "*", "policy", "*")

# Changes to governance.casbin_rule are announced on this channel (trigger from 0009).
CHANNEL = "rejuve_policy"


def user_subject(name: str) -> str:
    return USER_PREFIX + name


def role_subject(role: str) -> str:
    return ROLE_PREFIX + role


@dataclass(frozen=True)
class Rule:
    subject: str
    region: str
    resource: str
    action: str

    def __post_init__(self) -> None:
        if re.fullmatch(_NAME, self.subject):
            raise UserError(
                f"subject '{self.subject}' must say what it is: user:{self.subject}"
                f" (a Hub user) or role:{self.subject} (a role)"
            )
        for name, pattern in RULE_PATTERNS.items():
            if not re.fullmatch(pattern, getattr(self, name)):
                raise UserError(f"{name} '{getattr(self, name)}' does not match {pattern}")

    def as_tuple(self) -> tuple[str, str, str, str]:
        return (self.subject, self.region, self.resource, self.action)


def _covered(resource: str) -> set[str]:
    """The known resources a rule's resource pattern can match: itself if it is one, the
    pattern it is an instance of (`studies/s1/dataset`), or all a wildcard reaches."""
    if resource in KNOWN_RESOURCES:
        return {resource}
    return {k for k in KNOWN_RESOURCES if key_match2(resource, k) or key_match2(k, resource)}


def check_grant(rule: Rule, regions: Collection[str]) -> None:
    """Refuse, with one line saying why, a grant that could never be used or that gives a
    role more than its job: an unknown resource, region or role, or a resource outside
    the role's set (`ROLE_RESOURCES`). Shared by the API and the CLI."""
    if rule.region != "*" and rule.region not in regions:
        known = ", ".join(sorted(regions)) or "none"
        raise UserError(
            f"region '{rule.region}' is not configured here (configured: {known}, or *)"
        )
    covered = _covered(rule.resource)
    if not covered:
        raise UserError(
            f"no route has resource '{rule.resource}'; known: {', '.join(sorted(KNOWN_RESOURCES))}"
        )
    if rule.subject.startswith(ROLE_PREFIX):
        role = rule.subject.removeprefix(ROLE_PREFIX)
        if role not in ROLE_RESOURCES:
            raise UserError(f"unknown role '{role}'; roles: {', '.join(ROLES)}")
        outside = covered - ROLE_RESOURCES[role]
        if outside:
            raise UserError(
                f"role {role} may not be given {', '.join(sorted(outside))}: outside its role"
                f" (its resources: {', '.join(sorted(ROLE_RESOURCES[role]))})"
            )


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
# The slow poll behind the notifications: a notification lost with a dropped connection
# is made good within this many seconds (the listener also reloads when it reconnects).
SAFETY_POLL_SECONDS = 60.0
# Seeding takes this advisory lock, so workers starting together add each rule once.
_SEED_LOCK = 0x72_6A_76_70  # "rjvp"


def _libpq_url(sqlalchemy_url: str) -> str:
    return (
        make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


@dataclass
class Policy:
    enforcer: casbin.SyncedEnforcer
    # Regions a grant may name besides `*` (the regions this deployment serves).
    regions: frozenset[str] = frozenset()
    # pycasbin compiles and interprets its matcher for every rule on every decision (about
    # a millisecond with our baseline), and concurrent compiles in one process fail with
    # SystemError on CPython 3.11. So: one decision at a time, each remembered until the
    # policy is next loaded (a grant, a revoke, or a change announced by the database).
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _memo: dict[tuple[tuple[str, ...], str, str, str], bool] = field(
        default_factory=dict, repr=False
    )
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _listening: threading.Event = field(default_factory=threading.Event, repr=False)
    _engine: Engine | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls,
        sqlalchemy_url: str,
        *,
        regions: Collection[str] = (),
        listen: bool = True,
        reload_seconds: float = SAFETY_POLL_SECONDS,
    ) -> Policy:
        """The policy as stored. Other processes change it too: with `listen`, a thread
        waits for the database's notification of a change (trigger on casbin_rule) and
        reloads at once; every `reload_seconds` (0: never) it reloads anyway."""
        engine = create_engine(sqlalchemy_url, poolclass=pool.NullPool)
        adapter = Adapter(engine, db_class=CasbinRule, create_table=False)
        policy = cls(casbin.SyncedEnforcer(str(MODEL), adapter), frozenset(regions))
        policy._engine = engine
        if listen:
            threading.Thread(
                target=policy._listen, args=(_libpq_url(sqlalchemy_url),), daemon=True
            ).start()
            # Changes made before the listener is in place would be missed until the poll.
            if not policy._listening.wait(10):
                log.warning("policy listener not ready; relying on the periodic reload")
            else:
                policy.reload()
        if reload_seconds > 0:
            threading.Thread(
                target=policy._reload_every, args=(reload_seconds,), daemon=True
            ).start()
        return policy

    def _listen(self, conninfo: str) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if self._listening.is_set():
                        self.reload()  # reconnected: what changed while we were away
                    self._listening.set()
                    backoff = 0.5
                    while not self._stop.is_set():
                        # Wake up now and then to notice `close()`.
                        changed = False
                        for _ in conn.notifies(timeout=1.0):
                            changed = True
                            break
                        if changed:
                            self.reload()
            except Exception as e:  # the database may be away for a moment: keep going
                log.warning("policy listener lost its connection", error=type(e).__name__)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

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
        """True if the user (as `user:<name>`), or any of the user's roles (as
        `role:<role>`), is allowed; deny by default."""
        subjects = (user_subject(user), *sorted(role_subject(r) for r in roles))
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
        processes change the policy too); True if the policy changed. A grant that could
        never be used, or gives a role more than its job, is refused (`check_grant`);
        a revocation is always allowed (but the admins' way in)."""
        if not granted and rule.as_tuple() == LOCKOUT_GUARD:
            raise UserError("refused: revoking it would leave nobody able to administer the policy")
        if granted:
            check_grant(rule, self.regions)
        self.reload()
        if granted:
            return self.grant(*rule.as_tuple())
        return self.revoke(*rule.as_tuple())

    def rules(self) -> list[list[str]]:
        return [list(r) for r in self.enforcer.get_policy()]

    def _snapshot(self) -> tuple[list[list[str]], list[list[str]]]:
        return self.rules(), [list(r) for r in self.enforcer.get_grouping_policy()]

    def reload(self) -> None:
        # The safety poll finds nothing new almost always: keep the memo then.
        before = self._snapshot()
        self.enforcer.load_policy()
        if self._snapshot() != before:
            with self._lock:
                self._memo.clear()


def seed_defaults(policy: Policy) -> int:
    """Install the baseline policy (idempotent, also with several workers starting at
    once); returns how many rules were added."""
    engine = policy._engine
    assert engine is not None
    with engine.connect() as lock:
        lock.execute(text("select pg_advisory_lock(:k)"), {"k": _SEED_LOCK})
        try:
            policy.reload()
            existing = {tuple(r) for r in policy.rules()}
            added = 0
            for role, resource, action in DEFAULT_POLICY:
                if (role_subject(role), "*", resource, action) not in existing:
                    added += policy.grant(role_subject(role), "*", resource, action)
            return added
        finally:
            lock.execute(text("select pg_advisory_unlock(:k)"), {"k": _SEED_LOCK})
            lock.commit()
