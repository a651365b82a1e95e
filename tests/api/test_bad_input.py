"""Bad input gets a 4xx, never a 500, and no request is answered without its audit record
(issue 8, items 8 and 10). Over HTTPS against the running backend, with real Hub users."""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import ssl
import uuid
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from backend.stack.context import StackContext
from tests.hub_people import add_member, hub_people

RANGE = {"start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"}


@dataclass
class People:
    names: dict[str, str]
    tokens: dict[str, str]
    study: str


@pytest.fixture(scope="module")
def people(ctx: StackContext) -> Iterator[People]:
    roles = {"ada": "admin", "aud": "auditor", "mia": "member", "ria": "researcher"}
    with hub_people(ctx, roles) as (names, tokens):
        add_member(ctx, names["mia"])
        study = f"bad-{secrets.token_hex(3)}"
        with _client(ctx, tokens["ada"]) as client:
            assert client.post("/v1/studies", json={"study_id": study, "title": "t"}).is_success
            added = client.post(
                f"/v1/studies/{study}/researchers", json={"researcher": names["ria"]}
            )
            assert added.is_success
        yield People(names, tokens, study)


def _client(ctx: StackContext, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"token {token}"} if token else {}
    tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
    return httpx.Client(base_url=ctx.backend_url, verify=tls, headers=headers, timeout=60)


def _records(ctx: StackContext, response: httpx.Response) -> list[tuple[object, ...]]:
    with ctx.db.connect("backend") as conn:
        rows = conn.execute(
            "select actor, action, outcome, status from governance.audit_log where request_id = %s",
            (uuid.UUID(response.headers["x-request-id"]),),
        ).fetchall()
    return [tuple(r) for r in rows]


def _operations(ctx: StackContext) -> list[tuple[str, str]]:
    with _client(ctx) as client:
        paths = client.get("/openapi.json").json()["paths"]
    fill = {
        "{member}": "self",
        "{study}": "s-1",
        "{quarantine_id}": str(uuid.UUID(int=1)),
    }
    ops = []
    for path, item in paths.items():
        for key, value in fill.items():
            path = path.replace(key, value)
        ops += [(method.upper(), path) for method in item if method in ("get", "post")]
    return [*ops, ("GET", "/healthz"), ("GET", "/docs"), ("GET", "/v1/no/such/route")]


def test_a_non_ascii_authorization_header_is_4xx_everywhere_without_a_traceback(
    ctx: StackContext,
) -> None:
    log = ctx.layout.log_file("backend")
    before = log.stat().st_size
    header = "token caf\u00e9-\u2603".encode()  # what a browser pastes, as raw bytes
    answers = {}
    with _client(ctx) as client:
        for method, path in _operations(ctx):
            r = client.request(method, path, headers={b"Authorization": header}, json={})
            answers[f"{method} {path}"] = r.status_code
            assert "x-request-id" in r.headers, (method, path)
    assert len(answers) >= 20
    assert all(code < 500 for code in answers.values()), answers
    assert answers["GET /v1/members/self/timeline"] == 401
    assert answers["POST /v1/ingest/batches"] == 401
    with log.open("rb") as f:
        f.seek(before)
        added = f.read().decode("utf-8", "replace")
    assert "Traceback" not in added


def test_nul_in_audit_filters_is_422(ctx: StackContext, people: People) -> None:
    with _client(ctx, people.tokens["aud"]) as client:
        for name in ("actor", "resource_prefix"):
            r = client.get("/v1/audit", params={name: "a\x00b"})
            assert r.status_code == 422, (name, r.text)
            assert ["query", name] in [d["loc"] for d in r.json()["detail"]]
            assert _records(ctx, r) == [(people.names["aud"], "request.refused", "denied", 422)]


@pytest.mark.parametrize("after", ["x|y", "2026-11-01T00:00:00|8867-4", "|"])
def test_a_bad_timeline_cursor_is_422(ctx: StackContext, people: People, after: str) -> None:
    with _client(ctx, people.tokens["mia"]) as client:
        r = client.get("/v1/members/self/timeline", params={**RANGE, "after": after})
    assert r.status_code == 422, r.text
    assert ["query", "after"] in [d["loc"] for d in r.json()["detail"]]
    assert len(_records(ctx, r)) == 1


@pytest.mark.parametrize(
    ("who", "path", "body"),
    [
        ("ada", "/v1/studies", '{"study_id": "lone-x", "title": "a\\ud800b"}'),
        (
            "mia",
            "/v1/members/self/consent",
            '{"purpose": "coaching", "category": "\\udc00",'
            ' "granted": true, "consent_version": "v1"}',
        ),
        (
            "ria",
            "/v1/studies/{study}/cohort-stats",
            '{"code": "\\ud800", "start": "' + RANGE["start"] + '", "end": "' + RANGE["end"] + '"}',
        ),
        (None, "/v1/studies", '{"\\ud800": 1}'),
    ],
)
def test_lone_surrogate_escapes_in_json_bodies_are_422(
    ctx: StackContext, people: People, who: str | None, path: str, body: str
) -> None:
    token = people.tokens[who] if who else None
    with _client(ctx, token) as client:
        r = client.post(
            path.format(study=people.study),
            content=body.encode(),
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 422, r.text
    assert "surrogate" in r.text
    assert len(_records(ctx, r)) == 1


def test_a_non_finite_criterion_is_refused_and_audited(ctx: StackContext, people: People) -> None:
    """Item 8: `"Infinity"` ran the query, then the audit write failed (500, no record)."""
    body = {"code": "8867-4", **RANGE, "criteria": [{"code": "8867-4", "op": ">", "value": 0}]}
    with _client(ctx, people.tokens["ria"]) as client:
        for value in ("Infinity", "-Infinity", "NaN", "1e400"):
            body["criteria"][0]["value"] = value  # type: ignore[index]
            r = client.post(f"/v1/studies/{people.study}/cohort-stats", json=body)
            assert r.status_code == 422, (value, r.text)
            assert _records(ctx, r) == [(people.names["ria"], "request.refused", "denied", 422)]
        raw = client.post(
            f"/v1/studies/{people.study}/cohort-stats",
            content=json.dumps(
                {**body, "criteria": [{"code": "8867-4", "op": ">", "value": math.inf}]}
            ).encode(),  # the bare JSON token `Infinity`, as Python's json writes it
            headers={"content-type": "application/json"},
        )
    assert raw.status_code == 422, raw.text
    assert len(_records(ctx, raw)) == 1


def test_no_answer_without_its_audit_record(ctx: StackContext, people: People) -> None:
    """When the record cannot be written, the caller gets 503 and none of the data."""
    actor = people.names["ria"]
    constraint = f"refuse_{secrets.token_hex(4)}"
    with ctx.db.connect("owner") as conn:
        # The trail refuses this one person's records from now on (NOT VALID: the rows
        # already there are not checked), as a full disk or a broken trigger would.
        conn.execute(
            f"alter table governance.audit_log add constraint {constraint}"
            f" check (actor <> '{actor}') not valid"
        )
    try:
        with _client(ctx, people.tokens["ria"]) as client:
            studies = client.get("/v1/studies")
            dataset = client.get(f"/v1/studies/{people.study}/dataset", params=RANGE)
    finally:
        with ctx.db.connect("owner") as conn:
            conn.execute(f"alter table governance.audit_log drop constraint {constraint}")
    for r in (studies, dataset):
        assert r.status_code == 503, r.text
        assert people.study not in r.text
        assert "x-request-id" in r.headers
        assert _records(ctx, r) == []
    with _client(ctx, people.tokens["ria"]) as client:
        again = client.get("/v1/studies")
    assert again.status_code == 200 and people.study in again.text


def test_audit_params_are_always_storable() -> None:
    from backend.api.governed import storable

    cleaned = storable(
        {"v": float("inf"), "n": float("nan"), "s": "a\x00b\ud800", "k\x00": [float("-inf")]}
    )
    assert cleaned == {"v": "inf", "n": "nan", "s": "a\ufffdb\ufffd", "k\ufffd": ["-inf"]}


def test_an_unhandled_error_is_a_500_with_the_request_id() -> None:
    from backend.api.request_guard import RequestGuard, RequestLimits

    app = FastAPI()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("with personal data: Anna Smith")

    app.add_middleware(RequestGuard, limits=RequestLimits())
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/boom",
        "raw_path": b"/boom",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"t")],
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
    }
    asyncio.run(app(scope, receive, send))  # no exception escapes to the server
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    assert start["status"] == 500
    assert json.loads(body) == {"detail": "internal error"}
    assert uuid.UUID(dict(start["headers"])[b"x-request-id"].decode())
    assert b"Anna" not in body
