"""Requests refused before any route runs (malformed, too large, no such endpoint) are
audited like the rest: one record each, named after the caller when their token is good,
under the request id the caller was given."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator

import httpx
import pytest

from backend.governance import audit
from backend.stack.context import StackContext
from tests.hub_people import hub_people


@pytest.fixture(scope="module")
def token(ctx: StackContext) -> Iterator[tuple[str, str]]:
    with hub_people(ctx, {"ria": "researcher"}) as (names, tokens):
        yield names["ria"], tokens["ria"]


def _record(ctx: StackContext, request_id: str) -> list[tuple[object, ...]]:
    with ctx.db.connect("backend") as conn:
        rows = conn.execute(
            "select actor, action, resource, outcome, status, params->>'reason'"
            " from governance.audit_log where request_id = %s",
            (uuid.UUID(request_id),),
        ).fetchall()
        assert audit.verify(conn).ok
    return rows


def _client(ctx: StackContext, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"token {token}"} if token else {}
    tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
    return httpx.Client(base_url=ctx.backend_url, verify=tls, headers=headers, timeout=30)


def test_malformed_input_is_audited_with_the_callers_name(
    ctx: StackContext, token: tuple[str, str]
) -> None:
    name, tok = token
    with _client(ctx, tok) as client:
        # The guard runs first (a researcher may read a study's dataset), then validation.
        r = client.get("/v1/studies/s-1/dataset", params={"start": "yesterday", "end": "today"})
    assert r.status_code == 422
    assert _record(ctx, r.headers["x-request-id"]) == [
        (name, "request.refused", "studies/s-1/dataset", "denied", 422, "invalid input")
    ]


def test_too_large_and_unknown_are_audited_anonymously(ctx: StackContext) -> None:
    with _client(ctx) as client:
        big = client.post(
            "/v1/studies/s-1/cohort-stats",
            content=b"{" + b" " * (70 * 1024) + b"}",
            headers={"content-type": "application/json"},
        )
        unknown = client.get("/v1/nothing/here")
    assert (big.status_code, unknown.status_code) == (413, 404)
    [(actor, action, resource, outcome, status, reason)] = _record(ctx, big.headers["x-request-id"])
    assert (actor, action, resource, outcome, status) == (
        "anonymous",
        "request.refused",
        "studies/s-1/cohort-stats",
        "denied",
        413,
    )
    assert "larger than" in str(reason)
    assert [r[:5] for r in _record(ctx, unknown.headers["x-request-id"])] == [
        ("anonymous", "request.refused", "nothing/here", "denied", 404)
    ]


def test_a_governed_refusal_is_recorded_once(ctx: StackContext) -> None:
    with _client(ctx) as client:
        r = client.get(
            "/v1/members/self/timeline",
            params={"start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"},
        )
    assert r.status_code == 401
    rows = _record(ctx, r.headers["x-request-id"])
    assert [row[:5] for row in rows] == [
        ("anonymous", "timeline.read", "members/self/timeline", "denied", 401)
    ]
