"""A Hub user named after a role gets that name's user rights only, over HTTP: real Hub
accounts called `auditor`, `admin`, `coach`, ... whose only role is member are refused
(and audited) on every route of the role they are named after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from backend.governance.policy import ROLES
from backend.identity import hub_auth
from backend.stack.context import StackContext
from tests.hub_people import Backend, hub_token

# What each role's own routes are: a user with only the member role must get 403 on each.
ROLE_ROUTES: dict[str, list[tuple[str, str]]] = {
    "auditor": [("GET", "/v1/audit")],
    "admin": [("GET", "/v1/policy"), ("GET", "/v1/assignments")],
    "coach": [("GET", f"/v1/members/{uuid.uuid4()}/consent")],
    "researcher": [("GET", "/v1/studies")],
    "steward": [("GET", "/v1/quality"), ("GET", "/v1/quarantine")],
    "member": [],
}


@pytest.fixture(scope="module")
def named_like_roles(ctx: StackContext) -> Iterator[dict[str, str]]:
    """Tokens of Hub users named exactly like each role, all with the member role only."""
    taken = [r for r in ROLES if hub_auth.lookup(ctx.hub.user_store, r) is not None]
    assert not taken, f"Hub users {taken} exist already on this stack"
    password = "correct horse battery staple"
    for role in ROLES:
        hub_auth.add_user(ctx.hub.user_store, role, password, ["member"], rounds=4)
    try:
        yield {role: hub_token(ctx, role, password) for role in ROLES}
    finally:
        for role in ROLES:
            hub_auth.remove_user(ctx.hub.user_store, role)


@pytest.mark.parametrize("name", [r for r in ROLES if ROLE_ROUTES[r]])
def test_a_member_named_after_a_role_is_refused_that_roles_routes(
    ctx: StackContext, named_like_roles: dict[str, str], name: str
) -> None:
    api = Backend(ctx)
    try:
        for method, path in ROLE_ROUTES[name]:
            r = api.call(method, path, named_like_roles[name])
            assert r.status_code == 403, (name, path, r.status_code)
            assert api.audit_of(r) == [(name, "denied", 403)]
    finally:
        api.close()


@pytest.mark.parametrize("name", ROLES)
def test_they_keep_what_their_member_role_gives(
    ctx: StackContext, named_like_roles: dict[str, str], name: str
) -> None:
    api = Backend(ctx)
    try:
        # No member record behind the account: past Casbin, the object rule says 404.
        r = api.call("GET", "/v1/members/self/consent", named_like_roles[name])
        assert r.status_code == 404, (name, r.status_code, r.text)
    finally:
        api.close()


def test_every_role_has_routes_here() -> None:
    assert set(ROLE_ROUTES) == set(ROLES)
