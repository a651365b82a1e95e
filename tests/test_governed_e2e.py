"""The governed path end to end on the running stack: people log in to JupyterHub, their
Hub tokens reach the backend, Casbin and the SQL decide, and every request is audited."""

from __future__ import annotations

import datetime as dt
import secrets
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from backend.governance import audit, consent
from backend.identity import hub_auth
from backend.stack.context import StackContext
from tests import seed
from tests.hub_people import hub_token

T0 = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
RANGE = {"start": T0.isoformat(), "end": (T0 + dt.timedelta(days=1)).isoformat()}


@dataclass
class People:
    tokens: dict[str, str]
    names: dict[str, str]
    ann: uuid.UUID
    bob: uuid.UUID


@pytest.fixture(scope="module")
def people(ctx: StackContext) -> Iterator[People]:
    tag = secrets.token_hex(3)
    roles = {"carol": "coach", "ann": "member", "rita": "researcher"}
    names = {k: f"{k}-{tag}" for k in roles}
    password = "correct horse " + tag
    for k, role in roles.items():
        hub_auth.add_user(ctx.hub.user_store, names[k], password, [role], rounds=4)
    ann, bob = uuid.uuid4(), uuid.uuid4()
    with ctx.db.connect("owner") as conn:
        for m, hub in ((ann, names["ann"]), (bob, None)):
            conn.execute(
                "insert into governance.members (member_id, home_region, hub_user)"
                " values (%s, 'local', %s)",
                (m, hub),
            )
            seed.observations(
                conn, [(m, T0 + dt.timedelta(hours=i), "8867-4", 60 + i, "/min") for i in range(24)]
            )
        conn.execute(
            "insert into governance.coach_assignments (coach, member_id) values (%s, %s)",
            (names["carol"], ann),
        )
    with ctx.db.connect("backend") as conn:
        consent.record(
            conn,
            member=ann,
            purpose="coaching",
            category="wearables",
            granted=True,
            consent_version="v1",
            recorded_by=names["ann"],
        )
    tokens = {k: hub_token(ctx, names[k], password) for k in roles}
    seed.wait_rolled_up(ctx, [ann, bob])
    yield People(tokens, names, ann, bob)
    for n in names.values():
        hub_auth.remove_user(ctx.hub.user_store, n)


def get(ctx: StackContext, token: str, path: str, **params: str) -> httpx.Response:
    tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
    return httpx.get(
        f"{ctx.backend_url}{path}",
        params={**RANGE, **params},
        verify=tls,
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )


def test_role_x_object_matrix(ctx: StackContext, people: People) -> None:
    t, ann, bob = people.tokens, people.ann, people.bob
    cases = [
        ("carol", f"/v1/members/{ann}/timeline", 200),  # assigned, consenting
        ("carol", f"/v1/members/{bob}/timeline", 404),  # someone else's member
        ("carol", f"/v1/members/{uuid.uuid4()}/timeline", 404),  # nobody
        ("ann", "/v1/members/self/timeline", 200),
        ("ann", f"/v1/members/{ann}/timeline", 403),  # members use /self only
        ("ann", f"/v1/members/{bob}/timeline", 403),
        ("rita", f"/v1/members/{ann}/timeline", 403),  # researchers never see identified data
        ("rita", "/v1/members/self/timeline", 403),
    ]
    got = [(who, path, get(ctx, t[who], path).status_code) for who, path, _ in cases]
    assert got == cases
    ok = get(ctx, t["carol"], f"/v1/members/{ann}/timeline", bucket="day").json()
    assert ok["points"][0]["count"] == 24
    mine = get(ctx, t["ann"], "/v1/members/self/timeline").json()
    assert len(mine["points"]) == 24


def test_withdrawal_counts_on_the_next_request(ctx: StackContext, people: People) -> None:
    path = f"/v1/members/{people.ann}/timeline"
    assert len(get(ctx, people.tokens["carol"], path).json()["points"]) == 24
    with ctx.db.connect("backend") as conn:
        consent.record(
            conn,
            member=people.ann,
            purpose="coaching",
            category="wearables",
            granted=False,
            consent_version="v1",
            recorded_by=people.names["ann"],
        )
    assert get(ctx, people.tokens["carol"], path).json()["points"] == []
    with ctx.db.connect("backend") as conn:
        consent.record(
            conn,
            member=people.ann,
            purpose="coaching",
            category="wearables",
            granted=True,
            consent_version="v2",
            recorded_by=people.names["ann"],
        )


def test_every_request_is_audited(ctx: StackContext, people: People) -> None:
    carol = people.names["carol"]
    before = _count(ctx, carol)
    get(ctx, people.tokens["carol"], f"/v1/members/{people.ann}/timeline")
    get(ctx, people.tokens["carol"], f"/v1/members/{people.bob}/timeline")
    with ctx.db.connect("backend") as conn:
        rows = conn.execute(
            "select resource, outcome, status, role, row_count from governance.audit_log"
            " where actor = %s order by seq desc limit 2",
            (carol,),
        ).fetchall()
        assert audit.verify(conn).ok
    assert _count(ctx, carol) == before + 2
    assert rows == [
        (f"members/{people.bob}/timeline", "denied", 404, "coach", None),
        (f"members/{people.ann}/timeline", "allowed", 200, "coach", 24),
    ]


def _count(ctx: StackContext, actor: str) -> int:
    with ctx.db.connect("backend") as conn:
        row = conn.execute(
            "select count(*) from governance.audit_log where actor = %s", (actor,)
        ).fetchone()
    return int(row[0]) if row else 0


def post(ctx: StackContext, token: str, path: str, body: dict[str, object]) -> httpx.Response:
    tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
    return httpx.post(
        f"{ctx.backend_url}{path}",
        json=body,
        verify=tls,
        headers={"Authorization": f"token {token}"},
        timeout=60,
    )


def test_researcher_cohort_stats_and_the_differencing_attack(
    ctx: StackContext, people: People
) -> None:
    study = f"e2e-{secrets.token_hex(3)}"
    members = [uuid.uuid4() for _ in range(14)]
    with ctx.db.connect("owner") as conn:
        seed.study(conn, study, [people.names["rita"]])
        seed.observations(
            conn,
            [
                (m, T0 + dt.timedelta(hours=i), "8867-4", 60 + n, "/min")
                for n, m in enumerate(members)
                for i in range(2)
            ]
            + [(m, T0, "4548-4", 7.0 if n else 5.0, "%") for n, m in enumerate(members)],
        )
    with ctx.db.connect("backend") as conn:
        seed.consent_all(conn, members, f"study:{study}")
    body: dict[str, object] = {"code": "8867-4", **RANGE, "period": "day"}
    path = f"/v1/studies/{study}/cohort-stats"
    first = post(ctx, people.tokens["rita"], path, body)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["threshold"] == 10
    assert [r["values"]["count"] for r in answer["rows"]] == [14, 14]  # the day and its total
    # The attack: the same cohort minus the one member with a normal HbA1c.
    minus_one = post(
        ctx,
        people.tokens["rita"],
        path,
        {**body, "criteria": [{"code": "4548-4", "op": ">=", "value": 6.5}]},
    )
    assert minus_one.status_code == 200
    assert all(r["values"]["count"] is None for r in minus_one.json()["rows"])
    assert minus_one.json()["suppressed"]
    # Not on the study, or not a researcher: refused.
    assert post(ctx, people.tokens["carol"], path, body).status_code == 403
    with ctx.db.connect("owner") as conn:
        conn.execute("delete from governance.study_researchers where study_id = %s", (study,))
    assert post(ctx, people.tokens["rita"], path, body).status_code == 404
