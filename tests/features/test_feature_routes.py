"""Governed feature reads over HTTPS with real Hub users: online features for the member
and their assigned coach (per-view coaching consent, withdrawal in force on the next
request, another coach's member 404 and audited), point-in-time training sets for a
row-level study (exact against a pandas merge_asof reference, consent in the SQL, time
zones kept, no member id), and the study access level (aggregate: 403, audited)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import psycopg
import pytest
from feast import FeatureStore

from backend.features.materialise import materialise
from backend.governance import consent
from backend.keys.study_keys import StudyKeys, pseudonym
from backend.runtime import Runtime
from tests import seed
from tests.features.conftest import put_day
from tests.hub_people import Backend, add_member, hub_people

DAYS = 40
START = dt.date(2026, 9, 1)


@dataclass
class World:
    api: Backend
    tokens: dict[str, str]
    names: dict[str, str]
    ann: uuid.UUID
    bob: uuid.UUID
    study: str
    aggregate: str
    cohort: list[uuid.UUID]
    withdrawn: uuid.UUID
    key: bytes

    def call(self, who: str, method: str, path: str, **kw: object) -> object:
        return self.api.call(method, path, self.tokens[who], **kw)


def _grant(conn: object, member: uuid.UUID, purpose: str, category: str, on: bool) -> None:
    consent.record(
        conn,  # type: ignore[arg-type]
        member=member,
        purpose=purpose,
        category=category,
        granted=on,
        consent_version="v1",
        recorded_by="test",
    )


@pytest.fixture(scope="module")
def w(ctx: Runtime, store: FeatureStore) -> Iterator[World]:
    roles = {"ann": "member", "carol": "coach", "cid": "coach", "rita": "researcher"}
    rng = random.Random(9)  # noqa: S311 (reproducible test data)
    with hub_people(ctx, roles) as (names, tokens):
        ann, bob = add_member(ctx, names["ann"]), add_member(ctx)
        cohort = [add_member(ctx) for _ in range(4)]
        tag = names["ann"].rsplit("-", 1)[1]
        study, aggregate = f"fs-{tag}", f"fa-{tag}"
        with ctx.db.connect("owner") as conn:
            conn.execute(
                "insert into governance.coach_assignments (coach, member_id) values (%s, %s)",
                (names["carol"], ann),
            )
            conn.execute(
                "insert into governance.coach_assignments (coach, member_id) values (%s, %s)",
                (names["cid"], bob),
            )
            seed.study(conn, study, [names["rita"]])
            seed.study(conn, aggregate, [names["rita"]], access_level="aggregate")
            for cat in ("wearables", "activity", "sleep"):
                _grant(conn, ann, "coaching", cat, True)
                for m in cohort:
                    _grant(conn, m, consent.study_purpose(study), cat, True)
            # The last one withdraws every category from the study.
            for cat in ("wearables", "activity", "sleep"):
                _grant(conn, cohort[-1], consent.study_purpose(study), cat, False)
            for m in [ann, bob, *cohort]:
                for d in range(DAYS):
                    if rng.random() < 0.15:
                        continue  # days without data
                    put_day(
                        conn,
                        m,
                        START + dt.timedelta(days=d),
                        steps=rng.randint(1000, 20000),
                        resting_hr=rng.uniform(50, 80),
                        sleep_minutes=rng.choice([None, rng.uniform(300, 500)]),
                    )
        materialise(ctx.db, store)
        key = StudyKeys(ctx.layout.keys / "studies", ctx.kms()).key(study)
        api = Backend(ctx)
        yield World(api, tokens, names, ann, bob, study, aggregate, cohort, cohort[-1], key)
        api.close()


def test_a_coach_reads_an_assigned_member_and_not_what_is_withheld(w: World) -> None:
    r = w.api.call("GET", f"/v1/members/{w.ann}/features", w.tokens["carol"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["member"] == str(w.ann)
    assert isinstance(body["features"]["daily_activity__steps"], int)
    assert body["as_of"]["daily_activity"].endswith("+00:00")
    assert "latest_labs" in body["withheld"]  # no coaching consent for labs
    assert not any(k.startswith("latest_labs__") for k in body["features"])
    assert w.api.audit_of(r)[0][2] == 200


def test_another_coachs_member_is_404_and_audited(w: World) -> None:
    r = w.api.call("GET", f"/v1/members/{w.ann}/features", w.tokens["cid"])
    assert r.status_code == 404
    assert [(a, s) for a, _, s in w.api.audit_of(r)] == [(w.names["cid"], 404)]
    assert (
        w.api.call("GET", f"/v1/members/{uuid.uuid4()}/features", w.tokens["cid"]).status_code
        == 404
    )


def test_the_member_reads_their_own(w: World) -> None:
    r = w.api.call("GET", "/v1/members/self/features", w.tokens["ann"])
    assert r.status_code == 200, r.text
    assert r.json()["withheld"] == []
    assert "latest_labs__hba1c" in r.json()["features"]


def test_a_withdrawal_counts_on_the_next_request(ctx: Runtime, w: World) -> None:
    path = f"/v1/members/{w.ann}/features"
    assert "daily_activity__steps" in w.api.call("GET", path, w.tokens["carol"]).json()["features"]
    with ctx.db.connect("owner") as conn:
        _grant(conn, w.ann, "coaching", "activity", False)
    body = w.api.call("GET", path, w.tokens["carol"]).json()
    assert "daily_activity" in body["withheld"]
    assert "daily_activity__steps" not in body["features"]
    with ctx.db.connect("owner") as conn:
        _grant(conn, w.ann, "coaching", "activity", True)


def _frame(conn: psycopg.Connection, query: str, members: list[uuid.UUID]) -> pd.DataFrame:
    cur = conn.execute(query, (members,))
    names = [d.name for d in cur.description or ()]
    return pd.DataFrame(cur.fetchall(), columns=names)


def _reference(ctx: Runtime, members: list[uuid.UUID], entity: pd.DataFrame) -> pd.DataFrame:
    """pandas merge_asof over the same views: backward, exact matches allowed, ttl as the
    tolerance, ties on event_ts broken by computed_at (last wins)."""
    with ctx.db.connect("owner") as conn:
        daily = _frame(
            conn,
            "select member_uuid, event_ts, computed_at, steps, active_minutes, sleep_minutes,"
            " sleep_efficiency from analytics.feature_member_daily where member_uuid = any(%s)",
            members,
        )
        cardio = _frame(
            conn,
            "select member_uuid, event_ts, computed_at, resting_hr, resting_hr_7d,"
            " resting_hr_28d, hrv_ms, hrv_ms_28d from analytics.feature_cardio"
            " where member_uuid = any(%s)",
            members,
        )
    left = entity.assign(at_utc=pd.to_datetime(entity["at_utc"], utc=True)).sort_values("at_utc")
    out = left
    for frame, ttl, cols in (
        (daily, "2D", ["steps", "active_minutes"]),
        (daily, "2D", ["sleep_minutes", "sleep_efficiency"]),
        (cardio, "7D", ["resting_hr", "resting_hr_7d", "resting_hr_28d", "hrv_ms", "hrv_ms_28d"]),
    ):
        right = frame.assign(event_ts=pd.to_datetime(frame["event_ts"], utc=True))
        right = right.sort_values(["event_ts", "computed_at"]).drop_duplicates(
            ["member_uuid", "event_ts"], keep="last"
        )
        out = pd.merge_asof(
            out.sort_values("at_utc"),
            right[["member_uuid", "event_ts", *cols]],
            left_on="at_utc",
            right_on="event_ts",
            left_by="member_id",
            right_by="member_uuid",
            direction="backward",
            allow_exact_matches=True,
            tolerance=pd.Timedelta(ttl),
        ).drop(columns=["member_uuid", "event_ts"])
    return out.sort_values("ord")


def test_training_set_is_point_in_time_exact_and_consented(ctx: Runtime, w: World) -> None:
    rng = random.Random(5)  # noqa: S311 (reproducible test data)
    zones = [
        dt.UTC,
        dt.timezone(dt.timedelta(hours=5, minutes=30)),
        dt.timezone(-dt.timedelta(hours=8)),
    ]
    rows = []
    for i in range(300):
        m = w.cohort[i % len(w.cohort)]
        at = dt.datetime.combine(START, dt.time(), dt.UTC) + dt.timedelta(
            seconds=rng.randint(0, (DAYS + 3) * 86400)
        )
        if i % 10 == 0:  # exactly at a day's end: that day counts (inclusive bound)
            at = at.replace(hour=0, minute=0, second=0)
        rows.append((m, at.astimezone(rng.choice(zones))))
    body = {
        "service": "research_model",
        "rows": [{"pseudonym": pseudonym(w.key, m), "at": at.isoformat()} for m, at in rows],
    }
    r = w.api.call("POST", f"/v1/studies/{w.study}/training-set", w.tokens["rita"], json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    cols = got["columns"]
    assert cols[:2] == ["pseudonym", "at"]
    text = r.text
    for m in [*w.cohort, w.ann, w.bob]:
        assert str(m) not in text  # no member id anywhere in the answer
    withdrawn = pseudonym(w.key, w.withdrawn)
    assert all(row[0] != withdrawn for row in got["rows"])
    kept = [(m, at) for m, at in rows if m != w.withdrawn]
    assert len(got["rows"]) == len(kept)
    # Each `at` comes back as sent: same instant, same offset.
    assert [row[1] for row in got["rows"]] == [at.isoformat() for _, at in kept]

    entity = pd.DataFrame(
        {
            "ord": range(len(kept)),
            "member_id": [m for m, _ in kept],
            "at_utc": [at for _, at in kept],
        }
    )
    ref = _reference(ctx, w.cohort, entity).reset_index(drop=True)
    frame = pd.DataFrame(got["rows"], columns=cols)
    mismatches = 0
    for col in cols[2:]:
        name = col.split("__", 1)[1]
        a = pd.to_numeric(frame[col], errors="coerce").astype(float)
        b = pd.to_numeric(ref[name], errors="coerce").astype(float)
        same = (a.isna() & b.isna()) | ((a - b).abs() < 1e-9)
        mismatches += int((~same).sum())
    assert mismatches == 0
    assert frame["daily_activity__steps"].notna().sum() > 100  # the join found values


def test_aggregate_studies_refuse_row_level_data(w: World) -> None:
    body = {
        "service": "research_model",
        "rows": [{"pseudonym": "p-x", "at": "2026-09-10T00:00:00+00:00"}],
    }
    r = w.api.call("POST", f"/v1/studies/{w.aggregate}/training-set", w.tokens["rita"], json=body)
    assert r.status_code == 403
    assert [(a, s) for a, _, s in w.api.audit_of(r)] == [(w.names["rita"], 403)]
    start, end = "2026-09-01T00:00:00+00:00", "2026-09-05T00:00:00+00:00"
    d = w.api.call(
        "GET",
        f"/v1/studies/{w.aggregate}/dataset",
        w.tokens["rita"],
        params={"start": start, "end": end},
    )
    assert d.status_code == 403
    ok = w.api.call(
        "GET",
        f"/v1/studies/{w.study}/dataset",
        w.tokens["rita"],
        params={"start": start, "end": end},
    )
    assert ok.status_code == 200


def test_feasts_own_point_in_time_join_agrees(ctx: Runtime, w: World, applied: None) -> None:
    """Feast's get_historical_features (its entity frame uploaded as a table, hence the
    owner role here, never in the platform) gives the values our SQL gives."""
    import yaml
    from feast import FeatureStore as Store
    from feast.repo_config import RepoConfig

    from backend.features.environment import REPO, close_store, feast_environment, render_config
    from backend.query import training_set as ts
    from backend.query.viewer import Viewer

    env = feast_environment(ctx)
    env["FEAST_OFFLINE_USER"] = ctx.db.user_for("owner")
    env["FEAST_OFFLINE_PASSWORD"] = ctx.db.passwords["owner"]
    config = RepoConfig(**yaml.safe_load(render_config(env)))
    config.repo_path = REPO
    feast_store = Store(repo_path=str(REPO), config=config)
    rng = random.Random(11)  # noqa: S311 (reproducible test data)
    members = w.cohort[:-1]
    ats = [
        dt.datetime.combine(START, dt.time(), dt.UTC)
        + dt.timedelta(seconds=rng.randint(0, (DAYS + 2) * 86400))
        for _ in range(120)
    ]
    entity = pd.DataFrame(
        {
            "member_id": [str(members[i % len(members)]) for i in range(len(ats))],
            "event_timestamp": ats,
        }
    )
    try:
        svc = feast_store.get_feature_service("research_model")
        theirs = feast_store.get_historical_features(entity_df=entity, features=svc).to_df()
        specs = ts.specs_from_feast(feast_store, "research_model", None)
    finally:
        close_store(feast_store)
    # Feast returns naive UTC and its own row order: key both by (member, instant).
    theirs["event_timestamp"] = pd.to_datetime(theirs["event_timestamp"]).dt.tz_localize(None)
    theirs = theirs.set_index(["member_id", "event_timestamp"]).sort_index()
    rows = [
        (pseudonym(w.key, uuid.UUID(m)), at) for m, at in zip(entity["member_id"], ats, strict=True)
    ]
    viewer = Viewer(w.names["rita"], frozenset({"researcher"}), "local")
    with ctx.db.connect("query") as conn:
        ours = list(ts.training_set(conn, viewer, w.study, w.key, specs, rows))
    assert len(ours) == len(rows)
    compared = 0
    for (member, at), got in zip(zip(entity["member_id"], ats, strict=True), ours, strict=True):
        ref = theirs.loc[(member, pd.Timestamp(at).tz_convert(None))]
        ref = ref.iloc[0] if isinstance(ref, pd.DataFrame) else ref
        for spec in specs:
            for f in spec.features:
                value = got[2 + ts.columns(specs)[2:].index(f"{spec.name}__{f}")]
                expected = ref[f]
                if pd.isna(expected):
                    assert value is None, (member, at, f)
                else:
                    assert value is not None and abs(float(value) - float(expected)) < 1e-9
                    compared += 1
    assert compared > 200


def test_a_large_entity_frame_is_accepted(w: World) -> None:
    """Entity rows are data: the training set takes bodies beyond the 64 KiB of criteria
    routes (here ~150 KB), while every other governed route keeps its limit."""
    at = "2026-09-20T12:00:00+02:00"
    rows = [{"pseudonym": pseudonym(w.key, w.cohort[i % 3]), "at": at} for i in range(2000)]
    r = w.api.call(
        "POST",
        f"/v1/studies/{w.study}/training-set",
        w.tokens["rita"],
        json={"features": ["daily_activity:steps"], "rows": rows},
    )
    assert r.status_code == 200, r.text[:200]
    assert len(r.json()["rows"]) == 2000
    big = {"code": "8867-4", "padding": "x" * 100_000}
    refused = w.api.call("POST", f"/v1/studies/{w.study}/cohort-stats", w.tokens["rita"], json=big)
    assert refused.status_code == 413


def test_a_study_shows_its_access_level(w: World) -> None:
    for study, level in ((w.study, "row-level"), (w.aggregate, "aggregate")):
        r = w.api.call("GET", f"/v1/studies/{study}", w.tokens["rita"])
        assert (r.status_code, r.json()["access_level"]) == (200, level)
    assert w.api.call("GET", "/v1/studies/no-such-study", w.tokens["rita"]).status_code == 404
