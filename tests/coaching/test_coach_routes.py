"""The coach app's routes over HTTPS with real Hub users, on data that went the platform's
way: observations in, the stack's rollup service building the member-day summaries, the
detector (as the refiner role) storing alerts. A coach sees exactly their members, never
another coach's (404, audited); a withdrawal of coaching consent counts on the next
request; acknowledging is audited and kept in the alert's history."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from backend.coaching import alerts
from backend.governance import consent
from backend.runtime import Runtime
from tests import seed
from tests.hub_people import Backend, add_member, hub_people

TODAY = dt.datetime.now(dt.UTC).date()
DAYS = 35
EVERYTHING = ("wearables", "sleep", "labs", "vitals", "activity")
PCR_AT = dt.datetime.combine(TODAY - dt.timedelta(days=5), dt.time(9), dt.UTC)


@dataclass
class World:
    api: Backend
    tokens: dict[str, str]
    names: dict[str, str]
    ann: uuid.UUID  # carol's, shares everything, resting heart rate up the last 3 days
    wanda: uuid.UUID  # carol's, never consented to coaching
    bob: uuid.UUID  # cid's, same data as ann

    def get(self, who: str, path: str, params: dict[str, Any] | None = None) -> Any:
        r = self.api.call("GET", path, self.tokens[who], params=params)
        assert r.status_code == 200, r.text
        return r.json()


def _grant(member: uuid.UUID, category: str, on: bool, ctx: Runtime) -> None:
    with ctx.db.connect("owner") as conn:
        consent.record(
            conn,
            member=member,
            purpose="coaching",
            category=category,
            granted=on,
            consent_version="v1",
            recorded_by="test",
        )


def _history(member: uuid.UUID, rng: random.Random) -> list[seed.Row]:
    rows: list[seed.Row] = []
    for d in range(DAYS):
        day = TODAY - dt.timedelta(days=DAYS - 1 - d)
        at = dt.datetime.combine(day, dt.time(9, 30), dt.UTC)
        # The last three days: 15 beats above a steady baseline of 60.
        rhr = 60 + rng.uniform(-1.5, 1.5) + (15 if d >= DAYS - 3 else 0)
        rows.append((member, at, "40443-4", round(rhr, 1), "/min"))
        rows.append(
            (member, at.replace(hour=3), "80404-7", round(50 + rng.uniform(-3, 3), 1), "ms")
        )
    rows.append(
        (
            member,
            dt.datetime.combine(TODAY - dt.timedelta(days=10), dt.time(8), dt.UTC),
            "4548-4",
            6.3,
            "%",
        )
    )
    return rows


@pytest.fixture(scope="module")
def w(ctx: Runtime) -> Iterator[World]:
    roles = {"ann": "member", "carol": "coach", "cid": "coach"}
    rng = random.Random(10)  # noqa: S311 (reproducible test data)
    with hub_people(ctx, roles) as (names, tokens):
        ann, wanda, bob = add_member(ctx, names["ann"]), add_member(ctx), add_member(ctx)
        with ctx.db.connect("owner") as conn:
            for coach, member in (("carol", ann), ("carol", wanda), ("cid", bob)):
                conn.execute(
                    "insert into governance.coach_assignments (coach, member_id) values (%s, %s)",
                    (names[coach], member),
                )
            seed.observations(conn, _history(ann, rng) + _history(bob, rng))
            # A coded lab result (migration 0015): a SARS-CoV-2 PCR "Detected".
            conn.execute(
                "insert into processed.observations (member_id, observed_at, code, value,"
                " unit, source, raw_record_id, raw_received_at, value_code, value_system,"
                " value_text) values (%s, %s, '94500-6', null, '', 't', gen_random_uuid(),"
                " now(), '260373001', 'http://snomed.info/sct', 'Detected')",
                (ann, PCR_AT),
            )
        for m in (ann, bob):
            for cat in EVERYTHING:
                _grant(m, cat, True, ctx)
        seed.wait_rolled_up(ctx, [ann, bob], timeout=120)
        with ctx.db.connect("refiner") as conn:
            alerts.detect(conn, TODAY - dt.timedelta(days=11), TODAY, [ann, bob, wanda])
        api = Backend(ctx)
        yield World(api, tokens, names, ann, wanda, bob)
        api.close()


def test_triage_lists_exactly_the_coachs_members_worst_first(w: World) -> None:
    r = w.api.call("GET", "/v1/coach/triage", w.tokens["carol"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert dt.datetime.fromisoformat(body["as_of"]).tzinfo is not None
    rows = body["members"]
    assert [m["member"] for m in rows] == [str(w.ann), str(w.wanda)]
    ann = rows[0]
    assert ann["consent"] == {"coaching": "granted", "withheld_categories": []}
    assert ann["last_sync"] is not None and ann["open_alerts"] >= 1
    assert 0 <= ann["wear_coverage_7d"] <= 1
    by_rule = {f["rule"]: f for f in ann["flags"]}
    rhr = by_rule["rhr-up"]
    assert rhr["kind"] == "personal" and rhr["version"] == 1 and rhr["metric"] == "resting_hr"
    assert rhr["baseline"]["days"] >= 14 and 58 <= rhr["baseline"]["median"] <= 62
    assert rhr["value"] >= 73 and rhr["coverage_days"] >= 17 and "baseline" in rhr["explanation"]
    lab = by_rule["lab-out-of-range"]
    assert lab["metric"] == "4548-4" and lab["value"] == 6.3 and "5.6" in lab["threshold"]
    wanda = rows[1]
    assert wanda["consent"]["coaching"] == "withdrawn"
    assert set(wanda["consent"]["withheld_categories"]) >= set(EVERYTHING)
    assert wanda["flags"] == [] and wanda["last_sync"] is None and wanda["open_alerts"] == 0
    assert w.api.audit_of(r) == [(w.names["carol"], "allowed", 200)]


def test_alerts_say_why_they_fired(w: World) -> None:
    found = w.get("carol", f"/v1/members/{w.ann}/alerts", params={"status": "all"})
    assert isinstance(found, list)
    rhr = [a for a in found if a["rule"] == "rhr-up"]
    assert len(rhr) == 1  # one alert for the episode, not one a day
    a = rhr[0]
    assert a["version"] == 1 and a["status"] == "open" and a["baseline"]["days"] >= 14
    assert {e["code"] for e in a["evidence"]} == {"40443-4"}
    # The window the rule read: at least two of its days are the episode's.
    assert all(e["unit"] == "/min" for e in a["evidence"])
    assert sum(e["value"] >= 73 for e in a["evidence"]) >= 2
    assert TODAY - dt.timedelta(days=3) <= dt.date.fromisoformat(a["day"]) <= TODAY
    # The lab result outside its range is an alert of its own, with the result as evidence.
    (lab,) = [a for a in found if a["rule"] == "lab-out-of-range"]
    taken = dt.datetime.combine(TODAY - dt.timedelta(days=10), dt.time(8), dt.UTC)
    assert lab["metric"] == "4548-4" and lab["day"] == taken.date().isoformat()
    assert lab["evidence"] == [
        {
            "code": "4548-4",
            "at": taken.isoformat().replace("+00:00", "Z"),
            "value": 6.3,
            "unit": "%",
        }
    ]
    assert lab["baseline"] is None and "5.6" in lab["threshold"]


def test_detection_is_idempotent(ctx: Runtime, w: World) -> None:
    with ctx.db.connect("refiner") as conn:
        again = alerts.detect(conn, TODAY - dt.timedelta(days=3), TODAY, [w.ann, w.bob])
    assert again.member_days > 0 and again.inserted == 0


def test_another_coachs_member_and_alert_are_404_and_audited(w: World) -> None:
    for path in ("alerts", "labs", "daily"):
        r = w.api.call("GET", f"/v1/members/{w.ann}/{path}", w.tokens["cid"])
        assert r.status_code == 404, path
        assert w.api.audit_of(r) == [(w.names["cid"], "denied", 404)]
    bobs = w.get("cid", f"/v1/members/{w.bob}/alerts")
    assert bobs, "cid sees bob's alerts"
    r = w.api.call("POST", f"/v1/alerts/{bobs[0]['id']}/acknowledge", w.tokens["carol"], json={})
    assert r.status_code == 404
    assert w.api.audit_of(r) == [(w.names["carol"], "denied", 404)]
    r = w.api.call("POST", f"/v1/alerts/{uuid.uuid4()}/dismiss", w.tokens["carol"], json={})
    assert r.status_code == 404


def test_acknowledging_is_audited_and_kept(ctx: Runtime, w: World) -> None:
    open_ = w.get("carol", f"/v1/members/{w.ann}/alerts")
    target = open_[0]["id"]
    r = w.api.call(
        "POST", f"/v1/alerts/{target}/acknowledge", w.tokens["carol"], json={"note": "called her"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "acknowledged" and body["note"] == "called her"
    assert body["status_by"] == w.names["carol"]
    assert w.api.audit_of(r) == [(w.names["carol"], "allowed", 200)]
    still_open = w.get("carol", f"/v1/members/{w.ann}/alerts")
    assert target not in [a["id"] for a in still_open]
    with ctx.db.connect("owner") as conn:
        events = conn.execute(
            "select action, note, actor from analytics.alert_events where alert_id = %s",
            (uuid.UUID(target),),
        ).fetchall()
    assert events == [("acknowledge", "called her", w.names["carol"])]


def test_labs_come_with_reference_ranges(w: World) -> None:
    found = w.get("carol", f"/v1/members/{w.ann}/labs")
    assert found == [
        {
            "code": "94500-6",
            "name": "SARS-CoV-2 RNA (NAA, presence)",
            "value": None,
            "unit": "",
            "at": PCR_AT.isoformat().replace("+00:00", "Z"),
            "ref_low": None,
            "ref_high": None,
            "flag": None,
            "latest": True,
            "value_code": "260373001",
            "value_system": "http://snomed.info/sct",
            "value_text": "Detected",
            "value_boolean": None,
        },
        {
            "code": "4548-4",
            "name": "hemoglobin A1c",
            "value": 6.3,
            "unit": "%",
            "at": dt.datetime.combine(TODAY - dt.timedelta(days=10), dt.time(8), dt.UTC)
            .isoformat()
            .replace("+00:00", "Z"),
            "ref_low": 4.0,
            "ref_high": 5.6,
            "flag": "high",
            "latest": True,
            "value_code": None,
            "value_system": None,
            "value_text": None,
            "value_boolean": None,
        },
    ]


def test_the_member_reads_their_own_but_no_triage(w: World) -> None:
    own = w.get("ann", "/v1/members/self/alerts", params={"status": "all"})
    assert {a["rule"] for a in own} >= {"rhr-up"}
    daily = w.get("ann", "/v1/members/self/daily", params={"days": 5})
    assert len(daily) >= 3 and all(d["resting_hr"] >= 70 for d in daily[-3:])
    r = w.api.call("GET", "/v1/coach/triage", w.tokens["ann"])
    assert r.status_code == 403
    assert w.api.audit_of(r) == [(w.names["ann"], "denied", 403)]
    r = w.api.call("GET", f"/v1/members/{w.bob}/alerts", w.tokens["ann"])
    assert r.status_code == 403  # a member may use only members/self/...


def test_a_withdrawal_counts_on_the_next_request(ctx: Runtime, w: World) -> None:
    before = w.get("carol", f"/v1/members/{w.ann}/daily", params={"days": 7})
    assert any(d["resting_hr"] is not None for d in before)
    _grant(w.ann, "wearables", False, ctx)
    try:
        daily = w.get("carol", f"/v1/members/{w.ann}/daily", params={"days": 7})
        assert all(d["resting_hr"] is None and d["hrv_ms"] is None for d in daily)
        found = w.get("carol", f"/v1/members/{w.ann}/alerts", params={"status": "all"})
        assert all(a["rule"] not in ("rhr-up", "hrv-down") for a in found)
        tri = w.get("carol", "/v1/coach/triage")
        ann = tri["members"][0]
        assert ann["consent"]["withheld_categories"] == ["wearables"]
        assert ann["wear_coverage_7d"] is None
        assert "rhr-up" not in {f["rule"] for f in ann["flags"]}
        for cat in EVERYTHING:
            _grant(w.ann, cat, False, ctx)
        r = w.api.call("GET", f"/v1/members/{w.ann}/daily", w.tokens["carol"])
        assert r.status_code == 200 and r.json() == []
        tri = w.get("carol", "/v1/coach/triage")
        row = next(m for m in tri["members"] if m["member"] == str(w.ann))
        assert row["consent"]["coaching"] == "withdrawn" and row["flags"] == []
    finally:
        for cat in EVERYTHING:
            _grant(w.ann, cat, True, ctx)


def test_bad_input_is_a_4xx_after_authentication(w: World) -> None:
    for path, params in (
        (f"/v1/members/{w.ann}/daily", {"days": 0}),
        (f"/v1/members/{w.ann}/daily", {"days": 400}),
        (f"/v1/members/{w.ann}/alerts", {"status": "bogus"}),
    ):
        r = w.api.call("GET", path, w.tokens["carol"], params=params)
        assert r.status_code == 422, (path, params)
        assert w.api.audit_of(r) == [(w.names["carol"], "denied", 422)]
    r = w.api.call("GET", f"/v1/members/{w.ann}/daily", None, params={"days": 0})
    assert r.status_code == 401  # a stranger learns nothing, not even what is valid
    r = w.api.call("POST", "/v1/alerts/not-a-uuid/dismiss", w.tokens["carol"], json={})
    assert r.status_code == 404
    r = w.api.call(
        "POST", f"/v1/alerts/{uuid.uuid4()}/dismiss", w.tokens["carol"], json={"note": "x" * 3000}
    )
    assert r.status_code == 422
    r = w.api.call("GET", "/v1/members/not-a-member/labs", w.tokens["carol"])
    assert r.status_code == 404


def test_an_ended_assignment_counts_on_the_next_request(ctx: Runtime, w: World) -> None:
    with ctx.db.connect("owner") as conn:
        conn.execute(
            "update governance.coach_assignments set revoked_at = now()"
            " where coach = %s and member_id = %s",
            (w.names["carol"], w.wanda),
        )
    rows = w.get("carol", "/v1/coach/triage")["members"]
    assert [m["member"] for m in rows] == [str(w.ann)]
    r = w.api.call("GET", f"/v1/members/{w.wanda}/daily", w.tokens["carol"])
    assert r.status_code == 404
