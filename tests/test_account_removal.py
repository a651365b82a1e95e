"""Removing a person removes what they held (issue 8, item 7).

Before: assignments, study memberships, member links and personal rules were keyed by the
user name and survived `rejuve users remove`, so re-creating the name with a new password
read the former holder's member's timeline at once. Each test performs that attack over
the real stack: the Hub, the backend and the CLI."""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from backend.governance.policy import Policy
from backend.identity import hub_auth
from backend.stack.context import StackContext
from tests import seed
from tests.hub_people import Backend, add_member, hub_token

REJUVE = [sys.executable, "-m", "backend.cli.main"]
T0 = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
RANGE = {"start": T0.isoformat(), "end": (T0 + dt.timedelta(days=1)).isoformat()}


def rejuve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*REJUVE, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def api(ctx: StackContext) -> Iterator[Backend]:
    backend = Backend(ctx)
    yield backend
    backend.close()


def _account(ctx: StackContext, name: str, role: str) -> str:
    """Create the account; returns a fresh Hub token for it."""
    password = "pw " + secrets.token_hex(8)
    hub_auth.add_user(ctx.hub.user_store, name, password, [role], rounds=4)
    return hub_token(ctx, name, password)


def _cleanup(ctx: StackContext, name: str) -> None:
    if hub_auth.lookup(ctx.hub.user_store, name) is not None:
        hub_auth.remove_user(ctx.hub.user_store, name)


def _member_with_data(ctx: StackContext, hub_user: str | None = None) -> uuid.UUID:
    member = add_member(ctx, hub_user)
    with ctx.db.connect("owner") as conn:
        seed.observations(conn, [(member, T0, "8867-4", 61.0, "/min")])
    with ctx.db.connect("backend") as conn:
        seed.consent_all(conn, [member], "coaching")
    return member


def test_a_recreated_coach_name_does_not_inherit_the_members(
    ctx: StackContext, api: Backend
) -> None:
    name = f"cory-{secrets.token_hex(3)}"
    member = _member_with_data(ctx)
    with ctx.db.connect("owner") as conn:
        conn.execute(
            "insert into governance.coach_assignments (coach, member_id) values (%s, %s)",
            (name, member),
        )
    path = f"/v1/members/{member}/timeline"
    try:
        before = api.call("GET", path, _account(ctx, name, "coach"), params=RANGE)
        assert before.status_code == 200, before.text

        removed = rejuve("users", "remove", name)
        assert removed.returncode == 0, removed.stderr
        assert "revoked: 1 coach assignment(s)" in removed.stdout

        after = api.call("GET", path, _account(ctx, name, "coach"), params=RANGE)
        assert after.status_code in (403, 404), after.text
    finally:
        _cleanup(ctx, name)
    with ctx.db.connect("backend") as conn:
        held = conn.execute(
            "select revoked_at is not null from governance.coach_assignments where coach = %s",
            (name,),
        ).fetchall()
        audited = conn.execute(
            "select outcome, params->>'assignments' from governance.audit_log"
            " where action = 'users.remove' and resource = %s",
            (f"users/{name}",),
        ).fetchall()
    assert held == [(True,)], "the assignment is revoked, and stays on record"
    assert audited == [("allowed", "1")]


def test_a_recreated_member_name_does_not_inherit_the_record(
    ctx: StackContext, api: Backend
) -> None:
    name = f"mia-{secrets.token_hex(3)}"
    _member_with_data(ctx, hub_user=name)
    try:
        before = api.call(
            "GET", "/v1/members/self/timeline", _account(ctx, name, "member"), params=RANGE
        )
        assert before.status_code == 200, before.text
        assert rejuve("users", "remove", name).returncode == 0
        after = api.call(
            "GET", "/v1/members/self/timeline", _account(ctx, name, "member"), params=RANGE
        )
        assert after.status_code in (403, 404), after.text
    finally:
        _cleanup(ctx, name)


def test_study_memberships_and_personal_rules_go_with_the_account(
    ctx: StackContext, api: Backend
) -> None:
    name = f"rae-{secrets.token_hex(3)}"
    study = f"rm-{secrets.token_hex(3)}"
    # A researcher with no account is refused, with one line saying why.
    made = rejuve("studies", "add", study, "--title", "removal", "--researcher", name)
    assert made.returncode != 0
    assert f"{name} has no account with the researcher role" in made.stderr
    listed = rejuve("studies", "list", "--json")
    assert study not in listed.stdout, "a refused study is not created half-way"
    assert rejuve("studies", "add", study, "--title", "removal").returncode == 0
    policy = Policy.open(ctx.db.sqlalchemy_url("backend"), reload_seconds=0)
    try:
        _account(ctx, name, "researcher")
        added = rejuve("studies", "researchers", study, name)
        assert added.returncode == 0, added.stderr
        # Personal rules in both spellings (before and after users had a namespace).
        for subject in (name, f"user:{name}"):
            policy.grant(subject, "*", f"studies/{study}/dataset", "read")
        assert rejuve("users", "remove", name).returncode == 0
        policy.reload()
        assert [r for r in policy.rules() if name in r[0]] == []
        with ctx.db.connect("backend") as conn:
            left = conn.execute(
                "select count(*) from governance.study_researchers where researcher = %s",
                (name,),
            ).fetchone()
        assert left == (0,)
        token = _account(ctx, name, "researcher")
        listed = api.call("GET", "/v1/studies", token)
        assert listed.status_code == 200 and study not in listed.text
    finally:
        policy.close()
        _cleanup(ctx, name)


def test_a_user_named_after_a_role_does_not_take_the_roles_rules(ctx: StackContext) -> None:
    """Removing an account called `auditor` revokes `user:auditor`, never the role's rules."""
    from backend.governance.departures import personal_subjects

    assert personal_subjects("auditor") == ("user:auditor",)
    policy = Policy.open(ctx.db.sqlalchemy_url("backend"), reload_seconds=0)
    try:
        assert ["role:auditor", "*", "audit", "read"] in policy.rules()
    finally:
        policy.close()


def test_a_removed_persons_token_stops_working_within_seconds(
    ctx: StackContext, api: Backend
) -> None:
    """The Hub re-checks an account every 15 s (auth_refresh_age) and the backend caches a
    token's identity for 5 s: a removed person's token works for at most ~20 s."""
    name = f"tom-{secrets.token_hex(3)}"
    try:
        token = _account(ctx, name, "member")
        assert api.call("GET", "/v1/studies", token).status_code in (200, 403)
        assert rejuve("users", "remove", name).returncode == 0
        start = time.monotonic()
        while api.call("GET", "/v1/studies", token).status_code != 401:
            assert time.monotonic() - start < 25, "the token still works after 25 s"
            time.sleep(0.5)
    finally:
        _cleanup(ctx, name)
