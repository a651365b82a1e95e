"""Object-level authorisation inside the timeline SQL: role x viewer x other person's
member. A coach sees only assigned, consenting members; a member only themselves; any
other role nothing, whatever member id it asks for."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import pytest

from backend.analytics import rollups
from backend.db import migrate
from backend.db.access import DatabaseAccess
from backend.governance import consent
from backend.query import timeline as tl
from backend.query.viewer import Viewer

T0 = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)


@dataclass(frozen=True)
class World:
    db: DatabaseAccess
    ann: uuid.UUID  # assigned to coach carol, consents to coaching for wearables only
    bob: uuid.UUID  # assigned to nobody
    dan: uuid.UUID  # assigned to carol, withdrew coaching consent


@pytest.fixture(scope="module")
def world(migrated_db: DatabaseAccess) -> World:
    db = migrated_db
    migrate.upgrade(db)
    ann, bob, dan = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with db.connect("owner") as conn:
        for m, hub in ((ann, "ann"), (bob, "bob"), (dan, "dan")):
            conn.execute(
                "insert into governance.members (member_id, home_region, hub_user)"
                " values (%s, 'eu', %s)",
                (m, hub),
            )
            for i in range(48):  # heart rate every 30 min, one lab
                conn.execute(
                    "insert into processed.observations (member_id, observed_at, code, value,"
                    " unit, source, raw_record_id, raw_received_at) values"
                    " (%s, %s, '8867-4', %s, '/min', 't', gen_random_uuid(), now())",
                    (m, T0 + dt.timedelta(minutes=30 * i), 60 + i % 10),
                )
            conn.execute(
                "insert into processed.observations (member_id, observed_at, code, value, unit,"
                " source, raw_record_id, raw_received_at) values (%s, %s, '4548-4', 5.9, '%%',"
                " 't', gen_random_uuid(), now())",
                (m, T0),
            )
        for m in (ann, dan):
            conn.execute(
                "insert into governance.coach_assignments (coach, member_id) values ('carol', %s)",
                (m,),
            )
    with db.connect("backend") as conn:
        for m in (ann, dan):
            consent.record(
                conn,
                member=m,
                purpose="coaching",
                category="wearables",
                granted=True,
                consent_version="v1",
                recorded_by="test",
            )
        consent.record(
            conn,
            member=dan,
            purpose="coaching",
            category="wearables",
            granted=False,
            consent_version="v1",
            recorded_by="test",
        )
    with db.connect("owner") as conn:
        # The observations went in directly (no refiner): queue them, build the rollups.
        rollups.queue_all(conn)
        conn.commit()
        rollups.refresh_all(conn)
    return World(db, ann, bob, dan)


def _rows(w: World, viewer: Viewer, member: uuid.UUID, **kw: object) -> list[tl.Point]:
    with w.db.connect("query") as conn:
        return tl.timeline(conn, viewer, member, start=T0, end=T0 + dt.timedelta(days=1), **kw)  # type: ignore[arg-type]


def _may(w: World, viewer: Viewer, member: uuid.UUID) -> bool:
    with w.db.connect("query") as conn:
        return tl.can_view(conn, viewer, member)


CAROL = Viewer("carol", frozenset({"coach"}), "eu")
ANN = Viewer("ann", frozenset({"member"}), "eu")
RESEARCHER = Viewer("rita", frozenset({"researcher"}), "eu")
ADMIN = Viewer("root", frozenset({"admin", "steward", "auditor"}), "eu")


def test_coach_sees_assigned_consenting_member_only_consented_categories(world: World) -> None:
    rows = _rows(world, CAROL, world.ann)
    assert len(rows) == 48 and {r.code for r in rows} == {"8867-4"}  # no labs consent
    assert _may(world, CAROL, world.ann)


@pytest.mark.parametrize("who", ["bob", "dan"])
def test_coach_sees_nothing_of_others(world: World, who: str) -> None:
    member = getattr(world, who)
    assert _rows(world, CAROL, member) == []
    # dan is assigned (so the route lets carol ask) but withdrew consent: still nothing
    assert _may(world, CAROL, member) is (who == "dan")


def test_member_sees_self_and_nobody_else(world: World) -> None:
    mine = _rows(world, ANN, world.ann)
    assert len(mine) == 49 and {r.code for r in mine} == {"8867-4", "4548-4"}
    assert _rows(world, ANN, world.bob) == []
    assert not _may(world, ANN, world.bob)


@pytest.mark.parametrize("viewer", [RESEARCHER, ADMIN], ids=["researcher", "admin"])
def test_other_roles_see_no_identified_timeline(world: World, viewer: Viewer) -> None:
    for m in (world.ann, world.bob, world.dan):
        assert _rows(world, viewer, m) == []
        assert not _may(world, viewer, m)


def test_hourly_buckets_and_paging(world: World) -> None:
    hours = _rows(world, CAROL, world.ann, bucket="hour")
    assert len(hours) == 24 and all(p.count == 2 for p in hours)
    assert hours[0].min is not None and hours[0].max is not None
    pages: list[tl.Point] = []
    after = None
    while page := _rows(world, ANN, world.ann, after=after, limit=1):
        pages.extend(page)
        after = (page[-1].time, page[-1].code)
    # the lab and a heart rate share the first timestamp: neither is lost at the boundary
    assert len(pages) == 49
    assert len({(p.time, p.code) for p in pages}) == 49


@pytest.mark.parametrize(
    ("viewer", "who"),
    [(CAROL, "ann"), (CAROL, "bob"), (CAROL, "dan"), (ANN, "ann"), (ANN, "bob"), (ADMIN, "ann")],
)
@pytest.mark.parametrize("bucket", [None, "hour"])
def test_the_routes_one_round_trip_answers_as_the_two_calls(
    world: World, viewer: Viewer, who: str, bucket: tl.Bucket | None
) -> None:
    """`visible_timeline` (check and query pipelined) is `can_view` then `timeline`."""
    member = getattr(world, who)
    with world.db.connect("query") as conn:
        got = tl.visible_timeline(
            conn, viewer, member, start=T0, end=T0 + dt.timedelta(days=1), bucket=bucket
        )
    expected = _rows(world, viewer, member, bucket=bucket) if _may(world, viewer, member) else None
    assert got == expected


@pytest.mark.parametrize("bucket", ["hour", "day", "week", "month"])
@pytest.mark.parametrize(
    ("viewer", "who"), [(CAROL, "ann"), (CAROL, "bob"), (ANN, "ann"), (ANN, "bob")]
)
def test_buckets_read_from_rollups_equal_buckets_from_observations(
    world: World, bucket: tl.Bucket, viewer: Viewer, who: str
) -> None:
    """Same rows under the same rules, whichever zone answers; only aligned ranges go to
    the rollups (a range starting mid-bucket must not count rows before it)."""
    member = getattr(world, who)
    start, end = T0 - dt.timedelta(days=40), T0 + dt.timedelta(days=40)
    assert tl.from_rollups(bucket, start, end)
    assert not tl.from_rollups(bucket, start + dt.timedelta(minutes=30), end)
    params = {
        **tl._timeline_params(viewer, member, {"start": start, "end": end, "limit": 1000}),
    }
    with world.db.connect("query") as conn:
        raw = conn.execute(tl.timeline_sql(bucket, rollups=False), params).fetchall()
        rolled = conn.execute(tl.timeline_sql(bucket, rollups=True), params).fetchall()
    assert len(raw) == len(rolled)
    for a, b in zip(raw, rolled, strict=True):
        assert a[:2] == b[:2] and a[3:5] == b[3:5] and a[5:] == b[5:]
        assert abs(float(a[2]) - float(b[2])) < 1e-9
    assert raw or (viewer, who) == (CAROL, "bob") or (viewer, who) == (ANN, "bob")
