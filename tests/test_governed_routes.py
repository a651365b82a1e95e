"""What the governed routes answer, with real Hub users over HTTPS: consent (and a
withdrawal in force on the very next request), the steward's views (what is withheld),
audit search and verification, policy and assignment changes (audited, in force in the
running backend), and the request size limits. Who may call what is
tests/test_governed_matrix.py."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from backend.stack.context import StackContext
from tests import seed
from tests.hub_people import Backend, add_member, hub_people

T0 = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
RANGE = {"start": T0.isoformat(), "end": (T0 + dt.timedelta(days=1)).isoformat()}
REJUVE = [sys.executable, "-m", "backend.cli.main"]
NOTIFIED_SECONDS = 1.0  # a policy change reaches every backend worker by NOTIFY
CONSENT = {"purpose": "coaching", "category": "wearables", "granted": True, "consent_version": "v1"}


@dataclass
class World:
    api: Backend
    names: dict[str, str]
    tokens: dict[str, str]
    ann: uuid.UUID
    bob: uuid.UUID
    study: str

    def call(self, who: str | None, method: str, path: str, **kw: object) -> httpx.Response:
        return self.api.call(method, path, self.tokens[who] if who else None, **kw)


@pytest.fixture(scope="module")
def w(ctx: StackContext) -> Iterator[World]:
    roles = {
        "ann": "member",
        "carol": "coach",
        "stu": "steward",
        "aude": "auditor",
        "adam": "admin",
    }
    with hub_people(ctx, roles) as (names, tokens):
        ann, bob = add_member(ctx, names["ann"]), add_member(ctx)
        study = f"rt-{names['ann'].rsplit('-', 1)[1]}"
        with ctx.db.connect("owner") as conn:
            conn.execute(
                "insert into governance.coach_assignments (coach, member_id) values (%s, %s)",
                (names["carol"], ann),
            )
            seed.study(conn, study, [])
            seed.observations(
                conn,
                [
                    (m, T0 + dt.timedelta(hours=h), "8867-4", 60.0, "/min")
                    for m in (ann, bob)
                    for h in range(3)
                ],
            )
        api = Backend(ctx)
        yield World(api, names, tokens, ann, bob, study)
        api.close()


def _consent(
    w: World,
    category: str,
    granted: bool,
    version: str = "v2",
    change: dict[str, str] | None = None,
) -> httpx.Response:
    body = {**CONSENT, "category": category, "granted": granted, "consent_version": version}
    return w.call("ann", "POST", "/v1/members/self/consent", json={**body, **(change or {})})


# -- consent --------------------------------------------------------------------------


def test_a_withdrawal_through_the_endpoint_counts_on_the_next_request(
    ctx: StackContext, w: World
) -> None:
    timeline = f"/v1/members/{w.ann}/timeline"
    assert _consent(w, "wearables", True).status_code == 201
    assert len(w.call("carol", "GET", timeline, params=RANGE).json()["points"]) == 3

    withdrawn = _consent(w, "wearables", False, version="v3")
    assert withdrawn.status_code == 201, withdrawn.text
    assert w.call("carol", "GET", timeline, params=RANGE).json()["points"] == []

    state = withdrawn.json()
    assert state["effective"] == [
        {
            "purpose": "coaching",
            "category": "wearables",
            "granted": False,
            "consent_version": "v3",
            "recorded_at": state["history"][0]["recorded_at"],
        }
    ]
    assert [(h["action"], h["consent_version"], h["by_member"]) for h in state["history"]] == [
        ("withdraw", "v3", True),
        ("grant", "v2", True),
    ]
    # The ledger row points at the request that made it, and that request was audited.
    with ctx.db.connect("backend") as conn:
        row = conn.execute(
            "select e.evidence->>'request_id', a.action, a.params->>'consent_version'"
            " from governance.consent_events e join governance.audit_log a"
            " on a.request_id = (e.evidence->>'request_id')::uuid"
            " where e.member_id = %s order by e.recorded_at desc limit 1",
            (w.ann,),
        ).fetchone()
    assert row == (withdrawn.headers["x-request-id"], "consent.withdraw", "v3")
    assert _consent(w, "wearables", True, version="v4").status_code == 201
    assert len(w.call("carol", "GET", timeline, params=RANGE).json()["points"]) == 3


def test_a_coach_sees_the_coaching_consent_only(ctx: StackContext, w: World) -> None:
    with ctx.db.connect("backend") as conn:
        seed.consent_all(conn, [w.ann], f"study:{w.study}", categories=("labs",))
    mine = w.call("ann", "GET", "/v1/members/self/consent").json()
    theirs = w.call("carol", "GET", f"/v1/members/{w.ann}/consent").json()
    assert {e["purpose"] for e in mine["effective"]} == {"coaching", f"study:{w.study}"}
    assert {e["purpose"] for e in theirs["effective"]} == {"coaching"}
    assert {h["purpose"] for h in theirs["history"]} == {"coaching"}
    assert theirs["member"] == str(w.ann)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"category": "genome"}, "category"),
        ({"purpose": "marketing"}, "purpose"),
        ({"purpose": "study:no-such-study"}, "purpose"),
        ({"consent_version": ""}, "consent_version"),
    ],
)
def test_bad_consent_changes_are_422_with_the_field(
    w: World, change: dict[str, str], field: str
) -> None:
    r = _consent(w, "wearables", True, change=change)
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["detail"]] == [["body", field]]


def test_strangers_cannot_probe_study_ids(w: World) -> None:
    body = {**CONSENT, "purpose": "study:no-such-study"}
    assert w.call(None, "POST", "/v1/members/self/consent", json=body).status_code == 401
    assert w.call("carol", "POST", "/v1/members/self/consent", json=body).status_code == 403


# -- steward --------------------------------------------------------------------------


def test_the_steward_sees_what_fixing_needs_and_not_who(ctx: StackContext, w: World) -> None:
    batch, member = uuid.uuid4(), uuid.uuid4()
    record = {
        "code": "8867-4",
        "value": 400,
        "unit": "/min",
        "start": T0.isoformat(),
        "source": "Anna Smith's iPhone",
        "patient_name": "Jane Roe",
        "mrn": "MRN-0042",
    }
    with ctx.db.connect("owner") as conn:
        for i in range(3):
            conn.execute(
                "insert into processed.quarantine (raw_record_id, raw_received_at, member_id,"
                " reason, field, detail, record, batch_id, locator, quarantined_at)"
                " values (gen_random_uuid(), now(), %s, %s, 'value', 'too high', %s, %s, %s,"
                " %s)",
                (
                    member,
                    "implausible" if i else "unknown_code",
                    json.dumps(record),
                    batch,
                    f"labs.csv line {i + 2}",
                    T0 + dt.timedelta(minutes=i),
                ),
            )
    page = w.call("stu", "GET", "/v1/quarantine", params={"batch": str(batch), "limit": 2})
    assert page.status_code == 200, page.text
    assert "Jane Roe" not in page.text and "MRN-0042" not in page.text
    assert "Anna Smith" not in page.text  # a device name names its owner
    assert str(member) not in page.text
    first = page.json()
    assert [r["locator"] for r in first["records"]] == ["labs.csv line 4", "labs.csv line 3"]
    shown = first["records"][0]
    assert shown["record"] == {k: record[k] for k in ("code", "value", "unit", "start")}
    assert shown["withheld"] == ["mrn", "patient_name", "source"]
    assert shown["has_member"] is True
    rest = w.call(
        "stu",
        "GET",
        "/v1/quarantine",
        params={"batch": str(batch), "limit": 2, "after": first["next_after"]},
    ).json()
    assert [r["locator"] for r in rest["records"]] == ["labs.csv line 2"]
    assert rest["next_after"] is None

    by_reason = w.call(
        "stu", "GET", "/v1/quarantine", params={"batch": str(batch), "reason": "unknown_code"}
    ).json()
    assert [r["locator"] for r in by_reason["records"]] == ["labs.csv line 2"]
    since = w.call(
        "stu",
        "GET",
        "/v1/quarantine",
        params={"batch": str(batch), "since": (T0 + dt.timedelta(minutes=1)).isoformat()},
    ).json()
    assert len(since["records"]) == 2
    one = w.call("stu", "GET", f"/v1/quarantine/{shown['quarantine_id']}")
    assert one.json() == shown

    reject = f"/v1/quarantine/{shown['quarantine_id']}/reject"
    rejected = w.call("stu", "POST", reject, json={"note": "a typo at the lab"})
    assert rejected.status_code == 200, rejected.text
    assert rejected.json() == {**shown, "status": "rejected"}
    again = w.call("stu", "POST", reject, json={"note": "twice"})
    assert again.status_code == 409
    assert "already rejected" in again.json()["detail"]
    with ctx.db.connect("owner") as conn:
        row = conn.execute(
            "select q.status, q.resolution_note, a.actor, a.params->>'note'"
            " from processed.quarantine q join governance.audit_log a"
            " on a.request_id = %s where q.quarantine_id = %s",
            (uuid.UUID(rejected.headers["x-request-id"]), shown["quarantine_id"]),
        ).fetchone()
    assert row == ("rejected", "a typo at the lab", w.names["stu"], "a typo at the lab")


def test_quality_over_http_is_what_the_cli_shows(ctx: StackContext, w: World) -> None:
    with ctx.db.connect("owner") as conn:
        conn.execute(
            "insert into analytics.batch_quality (batch_id, source, format, received_at,"
            " completeness, validity_rate, duplicate_rate, lateness_p50_s, refine_lag_s)"
            " values (gen_random_uuid(), 't', 'omh', now(), 0.5, 0.75, 0.125, 30, 0.25)"
        )
    api = w.call("stu", "GET", "/v1/quality", params={"limit": 5})
    cli = subprocess.run(
        [*REJUVE, "quality", "--json", "--limit", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert api.status_code == 200

    def when(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        return [
            {**r, "received_at": dt.datetime.fromisoformat(str(r["received_at"]))} for r in rows
        ]

    assert when(api.json()) == when(json.loads(cli.stdout))
    newest = api.json()[0]
    assert (newest["completeness"], newest["validity_rate"], newest["lateness_p95_s"]) == (
        0.5,
        0.75,
        None,
    )


# -- audit ----------------------------------------------------------------------------


def test_audit_search_filters_and_pages(w: World) -> None:
    ann = w.names["ann"]
    allowed = w.call("ann", "GET", "/v1/members/self/consent")
    denied = w.call("ann", "GET", "/v1/quality")
    assert (allowed.status_code, denied.status_code) == (200, 403)

    def search(**params: object) -> dict[str, object]:
        r = w.call("aude", "GET", "/v1/audit", params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    latest = search(actor=ann, limit=2)
    records = latest["records"]
    assert isinstance(records, list)
    assert [(r["resource"], r["outcome"], r["status"]) for r in records] == [
        ("quality", "denied", 403),
        ("members/self/consent", "allowed", 200),
    ]
    assert records[0]["seq"] > records[1]["seq"]
    older = search(actor=ann, limit=2, before=latest["next_before"])["records"]
    assert isinstance(older, list) and older and older[0]["seq"] < records[1]["seq"]

    by_id = search(request_id=denied.headers["x-request-id"])["records"]
    assert [(r["actor"], r["action"], r["role"]) for r in by_id] == [
        (ann, "quality.read", "member")
    ]
    only_denied = search(actor=ann, outcome="denied")["records"]
    assert {r["outcome"] for r in only_denied} == {"denied"}
    prefixed = search(actor=ann, resource_prefix="members/self/")["records"]
    assert prefixed and all(r["resource"].startswith("members/self/") for r in prefixed)
    at = dt.datetime.fromisoformat(str(records[0]["at"]))
    window = search(
        actor=ann, since=at.isoformat(), until=(at + dt.timedelta(microseconds=1)).isoformat()
    )["records"]
    assert [r["seq"] for r in window] == [records[0]["seq"]]
    assert search(actor=f"nobody-{uuid.uuid4()}") == {"records": [], "next_before": None}


def test_audit_verify_over_http(w: World) -> None:
    r = w.call("aude", "GET", "/v1/audit/verify")
    assert r.status_code == 200
    result = r.json()
    assert result["ok"] is True and result["problems"] == []
    assert result["checked"] > 0


# -- policy and assignments -----------------------------------------------------------


def _audited(ctx: StackContext, request_id: str) -> tuple[str, str, str, dict[str, object]]:
    with ctx.db.connect("backend") as conn:
        row = conn.execute(
            "select actor, action, outcome, params from governance.audit_log where request_id = %s",
            (uuid.UUID(request_id),),
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3]


def test_an_admin_grant_and_revoke_are_in_force_at_once_and_audited(
    ctx: StackContext, w: World
) -> None:
    rule = {"subject": f"user:{w.names['ann']}", "resource": "quality", "action": "read"}
    assert w.call("ann", "GET", "/v1/quality").status_code == 403
    granted = w.call("adam", "POST", "/v1/policy/grants", json=rule)
    assert granted.status_code == 201, granted.text
    assert granted.json() == {"rule": {**rule, "region": "*"}, "changed": True}
    assert w.call("ann", "GET", "/v1/quality").status_code == 200
    assert {**rule, "region": "*"} in w.call("adam", "GET", "/v1/policy").json()
    again = w.call("adam", "POST", "/v1/policy/grants", json=rule)
    assert (again.status_code, again.json()["changed"]) == (200, False)

    revoked = w.call("adam", "POST", "/v1/policy/grants/revoke", json=rule)
    assert (revoked.status_code, revoked.json()["changed"]) == (200, True)
    assert w.call("ann", "GET", "/v1/quality").status_code == 403
    assert _audited(ctx, granted.headers["x-request-id"]) == (
        w.names["adam"],
        "policy.grant",
        "allowed",
        {**rule, "region": "*", "changed": True},
    )
    assert _audited(ctx, revoked.headers["x-request-id"]) == (
        w.names["adam"],
        "policy.revoke",
        "allowed",
        {**rule, "region": "*", "changed": True},
    )


def test_nobody_can_revoke_the_admins_way_in(ctx: StackContext, w: World) -> None:
    guard = {"subject": "role:admin", "region": "*", "resource": "policy", "action": "*"}
    r = w.call("adam", "POST", "/v1/policy/grants/revoke", json=guard)
    assert r.status_code == 409
    assert _audited(ctx, r.headers["x-request-id"])[1:3] == ("policy.revoke", "denied")
    assert w.call("adam", "GET", "/v1/policy").status_code == 200
    bad = w.call("adam", "POST", "/v1/policy/grants", json={**guard, "action": "delete"})
    assert [d["loc"] for d in bad.json()["detail"]] == [["body", "action"]]


def _until(status: int, call: object, limit: float) -> float:
    """Seconds until `call()` answers `status` (fails after `limit`)."""
    started = time.monotonic()
    while (got := call().status_code) != status:
        assert time.monotonic() - started < limit, f"still {got} after {limit} s"
        time.sleep(0.2)
    return time.monotonic() - started


def test_cli_policy_changes_reach_the_running_backend_and_are_audited(
    ctx: StackContext, w: World
) -> None:
    subject = f"user:{w.names['ann']}"
    quality = lambda: w.call("ann", "GET", "/v1/quality")  # noqa: E731
    assert quality().status_code == 403

    def rejuve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*REJUVE, "policy", *args], capture_output=True, text=True, timeout=120, check=False
        )

    granted = rejuve("grant", subject, "quality", "read")
    assert granted.returncode == 0, granted.stderr
    assert f"granted: {subject} read quality in *" in granted.stdout
    # Within the backend's reload interval (plus a request's worth of slack).
    assert _until(200, quality, NOTIFIED_SECONDS + 2) <= NOTIFIED_SECONDS + 2
    listed = rejuve("list", "--json")
    assert {"subject": subject, "region": "*", "resource": "quality", "action": "read"} in (
        json.loads(listed.stdout)
    )
    revoked = rejuve("revoke", subject, "quality", "read")
    assert revoked.returncode == 0, revoked.stderr
    assert _until(403, quality, NOTIFIED_SECONDS + 2) <= NOTIFIED_SECONDS + 2

    refused = rejuve("revoke", "role:admin", "policy", "*")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: refused:") and len(refused.stderr.splitlines()) == 1
    with ctx.db.connect("backend") as conn:
        rows = conn.execute(
            "select actor, role, action, outcome, client, params->>'subject', params->'changed'"
            " from governance.audit_log where client = 'cli' and seq > (select max(seq) - 200"
            " from governance.audit_log) order by seq desc limit 3"
        ).fetchall()
    operator = f"operator:{getpass.getuser()}"
    assert rows == [
        (operator, "operator", "policy.revoke", "denied", "cli", "role:admin", None),
        (operator, "operator", "policy.revoke", "allowed", "cli", subject, True),
        (operator, "operator", "policy.grant", "allowed", "cli", subject, True),
    ]


def test_assignments_decide_what_a_coach_sees(w: World) -> None:
    bob = f"/v1/members/{w.bob}/timeline"
    body = {"coach": w.names["carol"], "member": str(w.bob)}
    assert w.call("carol", "GET", bob, params=RANGE).status_code == 404
    assert w.call("adam", "POST", "/v1/assignments", json=body).status_code == 201
    assert w.call("carol", "GET", bob, params=RANGE).status_code == 200  # no consent: no points
    listed = w.call("adam", "GET", "/v1/assignments", params={"coach": w.names["carol"]}).json()
    assert sorted(a["member_id"] for a in listed) == sorted([str(w.ann), str(w.bob)])
    revoked = w.call("adam", "POST", "/v1/assignments/revoke", json=body)
    assert (revoked.status_code, revoked.json()["changed"]) == (200, True)
    assert w.call("carol", "GET", bob, params=RANGE).status_code == 404
    unknown = {**body, "member": str(uuid.uuid4())}
    assert w.call("adam", "POST", "/v1/assignments", json=unknown).status_code == 404


# -- size limits ----------------------------------------------------------------------


def test_oversized_bodies_and_query_strings_are_refused_before_parsing(w: World) -> None:
    big = {**CONSENT, "padding": "x" * 70_000}
    r = w.call("ann", "POST", "/v1/members/self/consent", json=big)
    assert (r.status_code, r.json()) == (
        413,
        {"detail": "the request body is larger than 65,536 bytes"},
    )
    assert r.headers["x-request-id"]

    def chunks() -> Iterator[bytes]:
        yield b'{"padding": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    chunked = w.api.client.post(
        "/v1/studies/any-study/cohort-stats",
        content=chunks(),
        headers={"content-type": "application/json", "authorization": f"token {w.tokens['ann']}"},
    )
    assert chunked.status_code == 413
    small = w.api.client.post(
        "/v1/studies/any-study/cohort-stats",
        content=iter([b"{", b"}"]),
        headers={"content-type": "application/json"},
    )
    assert small.status_code == 401  # under the limit: on to the route's guard
    long = w.call("stu", "GET", "/v1/quality", params={"format": "x" * 9000})
    assert (long.status_code, long.json()) == (
        414,
        {"detail": "the query string is longer than 8,192 bytes"},
    )
