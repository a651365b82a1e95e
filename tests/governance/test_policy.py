"""Casbin policy in the database: deny by default, the baseline role matrix, users and
roles in separate namespaces, grant and revoke, grants that could never be used refused,
and a change in one process reaching another within a second (LISTEN/NOTIFY)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from backend.db import migrate
from backend.db.access import DatabaseAccess
from backend.exceptions import UserError
from backend.governance.policy import (
    DEFAULT_POLICY,
    KNOWN_RESOURCES,
    LOCKOUT_GUARD,
    ROLE_RESOURCES,
    ROLES,
    Policy,
    Rule,
    seed_defaults,
)


@pytest.fixture(scope="module")
def db(migrated_db: DatabaseAccess) -> DatabaseAccess:
    migrate.upgrade(migrated_db)
    return migrated_db


@pytest.fixture
def policy(db: DatabaseAccess) -> Iterator[Policy]:
    p = Policy.open(db.sqlalchemy_url("backend"), regions=("eu",), listen=False, reload_seconds=0)
    seed_defaults(p)
    yield p
    p.close()


CASES = [
    # role, resource, action, allowed
    ("member", "members/self/timeline", "read", True),
    ("member", "members/0b8e/timeline", "read", False),
    ("member", "studies/asthma-1/dataset", "read", False),
    ("coach", "members/0b8e/timeline", "read", True),
    ("coach", "members/0b8e/timeline", "write", False),
    ("coach", "studies/asthma-1/cohort-stats", "read", False),
    ("researcher", "studies/asthma-1/cohort-stats", "read", True),
    ("researcher", "studies/asthma-1/dataset", "read", True),
    ("researcher", "members/0b8e/timeline", "read", False),
    ("researcher", "audit", "read", False),
    ("steward", "quarantine", "read", True),
    ("steward", "members/0b8e/timeline", "read", False),
    ("auditor", "audit", "read", True),
    ("auditor", "studies/asthma-1/dataset", "read", False),
    ("admin", "policy", "write", True),
    ("admin", "members/0b8e/timeline", "read", False),  # admins administer; they do not read data
    ("nobody", "audit", "read", False),
]


@pytest.mark.parametrize(("role", "resource", "action", "allowed"), CASES)
def test_baseline(policy: Policy, role: str, resource: str, action: str, allowed: bool) -> None:
    assert policy.allowed("someone", [role], "eu", resource, action) is allowed


@pytest.mark.parametrize("role", ROLES)
def test_a_user_named_after_a_role_gets_none_of_its_rights(policy: Policy, role: str) -> None:
    # A Hub user called `auditor` (or `admin`, ...) whose only role is member: before
    # namespaces, Casbin matched the user name against the role's rules.
    for rule_role, resource, action in DEFAULT_POLICY:
        concrete = resource.replace(":member", "0b8e").replace(":study", "asthma-1")
        act = "write" if action == "*" else action
        expected = rule_role == "member"
        assert policy.allowed(role, ["member"], "eu", concrete, act) is expected, (
            role,
            resource,
        )
        assert policy.allowed(role, [], "eu", concrete, act) is False


def test_a_user_rule_is_not_a_role_rule(policy: Policy) -> None:
    policy.grant("user:coach", "eu", "quality", "read")
    try:
        assert policy.allowed("coach", [], "eu", "quality", "read")
        assert not policy.allowed("carla", ["coach"], "eu", "quality", "read")
    finally:
        policy.revoke("user:coach", "eu", "quality", "read")


def test_deny_by_default_with_no_policy(db: DatabaseAccess) -> None:
    p = Policy.open(db.sqlalchemy_url("backend"), listen=False, reload_seconds=0)
    p.enforcer.clear_policy()
    assert not p.allowed("u", ["admin"], "eu", "policy", "write")


def test_grant_and_revoke_in_one_region(policy: Policy) -> None:
    assert not policy.allowed("ann", [], "eu", "studies/x/dataset", "read")
    policy.grant("user:ann", "eu", "studies/x/dataset", "read")
    assert policy.allowed("ann", [], "eu", "studies/x/dataset", "read")
    assert not policy.allowed("ann", [], "us", "studies/x/dataset", "read")  # domain = region
    policy.revoke("user:ann", "eu", "studies/x/dataset", "read")
    assert not policy.allowed("ann", [], "eu", "studies/x/dataset", "read")


def test_a_revocation_reaches_another_process_within_a_second(
    db: DatabaseAccess, policy: Policy
) -> None:
    # The other process polls only every minute: what arrives sooner came by NOTIFY.
    other = Policy.open(db.sqlalchemy_url("backend"), regions=("eu",), reload_seconds=60)
    try:
        assert not other.allowed("bob", [], "eu", "quality", "read")
        policy.change(Rule("user:bob", "eu", "quality", "read"), granted=True)
        _arrives_within(1.0, lambda: other.allowed("bob", [], "eu", "quality", "read"))
        policy.change(Rule("user:bob", "eu", "quality", "read"), granted=False)
        _arrives_within(1.0, lambda: not other.allowed("bob", [], "eu", "quality", "read"))
    finally:
        other.close()


def _arrives_within(seconds: float, check: Callable[[], bool]) -> None:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, f"not in force after {seconds} s"
        time.sleep(0.02)


def test_another_process_without_notifications_would_wait_for_its_poll(
    db: DatabaseAccess, policy: Policy
) -> None:
    # The test above can fail: without the listener, a change waits for the poll.
    deaf = Policy.open(db.sqlalchemy_url("backend"), listen=False, reload_seconds=60)
    try:
        assert not deaf.allowed("dora", [], "eu", "quality", "read")
        policy.change(Rule("user:dora", "eu", "quality", "read"), granted=True)
        time.sleep(1.5)
        assert not deaf.allowed("dora", [], "eu", "quality", "read")
    finally:
        policy.change(Rule("user:dora", "eu", "quality", "read"), granted=False)
        deaf.close()


def test_decisions_from_many_threads_at_once(policy: Policy) -> None:
    # The backend decides in a thread pool; pycasbin parses its matcher with `ast` on every
    # call, which raised SystemError under concurrency (found by bench/governed.py).
    def decide(i: int) -> list[bool]:
        return [
            policy.allowed(f"u{i}", {"coach"}, "eu", "members/m1/timeline", "read")
            and not policy.allowed(f"u{i}", {"coach"}, "eu", "studies/s1/dataset", "read")
            for _ in range(300)
        ]

    with ThreadPoolExecutor(16) as pool:
        answers = [a for batch in pool.map(decide, range(32)) for a in batch]
    assert len(answers) == 32 * 300 and all(answers)


def test_change_follows_the_database_not_a_stale_copy(db: DatabaseAccess, policy: Policy) -> None:
    other = Policy.open(
        db.sqlalchemy_url("backend"), regions=("eu",), listen=False, reload_seconds=0
    )
    try:
        rule = Rule("user:carl", "eu", "quality", "read")
        assert other.change(rule, granted=True) is True
        # `policy` loaded before the grant; its revoke still finds and removes the rule.
        assert policy.change(rule, granted=False) is True
        other.reload()
        assert not other.allowed("carl", [], "eu", "quality", "read")
        assert policy.change(rule, granted=False) is False
    finally:
        other.close()


def test_the_admins_way_in_cannot_be_revoked(policy: Policy) -> None:
    with pytest.raises(UserError, match="nobody able to administer"):
        policy.change(Rule(*LOCKOUT_GUARD), granted=False)
    assert policy.allowed("someone", ["admin"], "eu", "policy", "write")


@pytest.mark.parametrize(
    ("field", "rule"),
    [
        ("subject", ("", "*", "quality", "read")),
        ("subject", ("group:x", "*", "quality", "read")),
        ("region", ("user:ann", "EU", "quality", "read")),
        ("resource", ("user:ann", "*", "../etc", "read")),
        ("action", ("user:ann", "*", "quality", "delete")),
    ],
)
def test_a_malformed_rule_names_its_field(field: str, rule: tuple[str, str, str, str]) -> None:
    with pytest.raises(UserError, match=f"^{field} "):
        Rule(*rule)


def test_a_bare_subject_must_say_whether_it_is_a_user_or_a_role() -> None:
    with pytest.raises(UserError, match=r"user:auditor .* or role:auditor"):
        Rule("auditor", "*", "audit", "read")


@pytest.mark.parametrize(
    ("rule", "why"),
    [
        (("user:ann", "*", "cohort-stat", "read"), "no route has resource 'cohort-stat'"),
        (("role:coach", "*", "studies/:study/cohort-stat", "read"), "no route has resource"),
        (("user:ann", "mars", "quality", "read"), "region 'mars' is not configured"),
        (("role:nurse", "*", "quality", "read"), "unknown role 'nurse'"),
        (("role:coach", "*", "studies/:study/dataset", "read"), "role coach may not be given"),
        (("role:researcher", "eu", "studies/*", "*"), "role researcher may not be given"),
        (("role:member", "*", "members/:member/timeline", "read"), "role member may not be"),
        (("role:auditor", "*", "*", "*"), "role auditor may not be given"),
    ],
)
def test_a_grant_that_could_never_be_used_or_oversteps_a_role_is_refused(
    policy: Policy, rule: tuple[str, str, str, str], why: str
) -> None:
    before = policy.rules()
    with pytest.raises(UserError, match=why) as refused:
        policy.change(Rule(*rule), granted=True)
    assert "\n" not in str(refused.value)
    assert policy.rules() == before


@pytest.mark.parametrize(
    "rule",
    [
        ("role:coach", "eu", "members/:member/timeline", "read"),
        ("role:researcher", "*", "studies/asthma-1/dataset", "read"),
        ("user:ann", "eu", "studies/asthma-1/dataset", "read"),
        ("user:ann", "*", "quality", "read"),
    ],
)
def test_grants_within_a_role_or_to_a_user_on_a_known_resource_are_taken(
    policy: Policy, rule: tuple[str, str, str, str]
) -> None:
    assert policy.change(Rule(*rule), granted=True) is True
    assert policy.change(Rule(*rule), granted=False) is True


def test_the_baseline_fits_the_role_sets() -> None:
    for role, resource, _ in DEFAULT_POLICY:
        assert resource in ROLE_RESOURCES[role]
    assert set().union(*ROLE_RESOURCES.values()) == KNOWN_RESOURCES
    assert set(ROLE_RESOURCES) == set(ROLES)


def test_migration_0009_puts_existing_rules_in_their_namespace(scratch_db: DatabaseAccess) -> None:
    migrate.upgrade(scratch_db, "0006")
    rows = [("auditor", "*", "audit", "read"), ("alice", "*", "quality", "read")]
    with scratch_db.connect("owner") as conn:
        for r in [*rows, rows[0]]:  # a duplicate, as two workers seeding at once left
            conn.execute(
                "insert into governance.casbin_rule (ptype, v0, v1, v2, v3)"
                " values ('p', %s, %s, %s, %s)",
                r,
            )
    migrate.upgrade(scratch_db, "0009")
    with scratch_db.connect("owner") as conn:
        got = conn.execute(
            "select v0, v1, v2, v3 from governance.casbin_rule order by v0"
        ).fetchall()
    assert got == [("role:auditor", "*", "audit", "read"), ("user:alice", "*", "quality", "read")]
