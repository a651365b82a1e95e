"""Casbin policy in the database: deny by default, the baseline role matrix, grant and
revoke, and a change in one process reaching another."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from backend.db import migrate
from backend.db.access import DatabaseAccess
from backend.exceptions import UserError
from backend.governance.policy import LOCKOUT_GUARD, Policy, Rule, seed_defaults


@pytest.fixture(scope="module")
def db(migrated_db: DatabaseAccess) -> DatabaseAccess:
    migrate.upgrade(migrated_db)
    return migrated_db


@pytest.fixture
def policy(db: DatabaseAccess) -> Iterator[Policy]:
    p = Policy.open(db.sqlalchemy_url("backend"), reload_seconds=0)
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


def test_deny_by_default_with_no_policy(db: DatabaseAccess) -> None:
    p = Policy.open(db.sqlalchemy_url("backend"), reload_seconds=0)
    p.enforcer.clear_policy()
    assert not p.allowed("u", ["admin"], "eu", "policy", "write")


def test_grant_and_revoke_in_one_region(policy: Policy) -> None:
    assert not policy.allowed("ann", [], "eu", "studies/x/dataset", "read")
    policy.grant("ann", "eu", "studies/x/dataset", "read")
    assert policy.allowed("ann", [], "eu", "studies/x/dataset", "read")
    assert not policy.allowed("ann", [], "us", "studies/x/dataset", "read")  # domain = region
    policy.revoke("ann", "eu", "studies/x/dataset", "read")
    assert not policy.allowed("ann", [], "eu", "studies/x/dataset", "read")


def test_a_revocation_reaches_another_process(db: DatabaseAccess, policy: Policy) -> None:
    other = Policy.open(db.sqlalchemy_url("backend"), reload_seconds=0.5)
    try:
        policy.grant("bob", "eu", "quality", "read")
        deadline = time.monotonic() + 5
        while not other.allowed("bob", [], "eu", "quality", "read"):
            assert time.monotonic() < deadline, "grant did not arrive"
            time.sleep(0.1)
        policy.revoke("bob", "eu", "quality", "read")
        deadline = time.monotonic() + 5
        while other.allowed("bob", [], "eu", "quality", "read"):
            assert time.monotonic() < deadline, "revocation did not arrive"
            time.sleep(0.1)
    finally:
        other.close()


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
    other = Policy.open(db.sqlalchemy_url("backend"), reload_seconds=0)
    try:
        rule = Rule("carl", "eu", "quality", "read")
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
        ("region", ("ann", "EU", "quality", "read")),
        ("resource", ("ann", "*", "../etc", "read")),
        ("action", ("ann", "*", "quality", "delete")),
    ],
)
def test_a_malformed_rule_names_its_field(field: str, rule: tuple[str, str, str, str]) -> None:
    with pytest.raises(UserError, match=f"^{field} "):
        Rule(*rule)
