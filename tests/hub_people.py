"""Real people for tests of the governed path: Hub accounts with platform roles, logged in
through the Hub's login page, each with a Hub API token; and a client for the backend that
reads a response's audit record back by its X-Request-ID."""

from __future__ import annotations

import secrets
import ssl
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from backend.identity import hub_auth
from backend.identity.hub_client import login_token
from backend.runtime import Runtime


def hub_token(ctx: Runtime, name: str, password: str) -> str:
    return login_token(ctx.hub.url, ctx.layout.ca_cert, name, password, "test")


@contextmanager
def hub_people(
    ctx: Runtime, roles: Mapping[str, str]
) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """Accounts for {key: role} (names made unique per run); yields (names, tokens) by key
    and removes the accounts afterwards."""
    tag = secrets.token_hex(3)
    names = {k: f"{k}-{tag}" for k in roles}
    password = "correct horse " + tag
    for k, role in roles.items():
        hub_auth.add_user(ctx.hub.user_store, names[k], password, [role], rounds=4)
    try:
        yield names, {k: hub_token(ctx, names[k], password) for k in roles}
    finally:
        for n in names.values():
            hub_auth.remove_user(ctx.hub.user_store, n)


def add_member(ctx: Runtime, hub_user: str | None = None) -> uuid.UUID:
    member = uuid.uuid4()
    with ctx.db.connect("owner") as conn:
        conn.execute(
            "insert into governance.members (member_id, home_region, hub_user)"
            " values (%s, 'local', %s)",
            (member, hub_user),
        )
    return member


class Backend:
    """The backend over HTTPS, as a person with `token` (None: anonymous)."""

    def __init__(self, ctx: Runtime) -> None:
        self.ctx = ctx
        self.client = httpx.Client(
            base_url=ctx.backend_url,
            verify=ssl.create_default_context(cafile=str(ctx.layout.ca_cert)),
            timeout=60,
        )

    def close(self) -> None:
        self.client.close()

    def call(
        self,
        method: str,
        path: str,
        token: str | None,
        *,
        params: Mapping[str, Any] | None = None,
        json: object = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return self.client.request(method, path, params=params, json=json, headers=headers)

    def audit_of(self, response: httpx.Response) -> list[tuple[str, str, int]]:
        """(actor, outcome, status) of every audit record with the response's request id."""
        with self.ctx.db.connect("backend") as conn:
            rows = conn.execute(
                "select actor, outcome, status from governance.audit_log where request_id = %s",
                (uuid.UUID(response.headers["x-request-id"]),),
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]
