"""Queued member ids reach Redis: latest row per member, late corrections included, claims
committed only with the write."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
from feast import FeatureStore

from backend.features.materialise import materialise
from backend.runtime import Runtime
from tests.features.conftest import put_day
from tests.prefect_runs import run_deployment


def _online(store: FeatureStore, member: uuid.UUID) -> dict[str, object]:
    got = store.get_online_features(
        features=["daily_activity:steps", "cardio:resting_hr", "cardio:resting_hr_7d"],
        entity_rows=[{"member_id": str(member)}],
    ).to_dict()
    return {k: v[0] for k, v in got.items()}


def _queued(owner: psycopg.Connection, member: uuid.UUID) -> int:
    row = owner.execute(
        "select count(*) from analytics.feature_dirty where member_id = %s", (member,)
    ).fetchone()
    owner.rollback()
    return int(row[0]) if row else -1


def _drain(ctx: Runtime, store: FeatureStore) -> None:
    materialise(ctx.db, store, batch_size=50)


def test_queued_rows_reach_redis_latest_day_wins(
    ctx: Runtime, store: FeatureStore, owner: psycopg.Connection
) -> None:
    member = uuid.uuid4()
    today = dt.datetime.now(dt.UTC).date()
    put_day(owner, member, today - dt.timedelta(days=2), steps=1000, resting_hr=70)
    put_day(owner, member, today - dt.timedelta(days=1), steps=2000, resting_hr=60)
    assert _online(store, member)["steps"] is None
    _drain(ctx, store)
    got = _online(store, member)
    assert got["steps"] == 2000
    assert got["resting_hr"] == 60
    assert got["resting_hr_7d"] == 65  # the 7-day baseline over both days
    assert _queued(owner, member) == 0


def test_a_late_correction_with_the_same_event_ts_overwrites(
    ctx: Runtime, store: FeatureStore, owner: psycopg.Connection
) -> None:
    member = uuid.uuid4()
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    put_day(owner, member, day, steps=3000)
    _drain(ctx, store)
    assert _online(store, member)["steps"] == 3000
    # The worker recomputes the same day (late data): same event_ts, newer computed_at.
    put_day(owner, member, day, steps=3500, computed_at=dt.datetime.now(dt.UTC))
    _drain(ctx, store)
    assert _online(store, member)["steps"] == 3500


def test_a_late_row_for_an_old_day_updates_the_baseline(
    ctx: Runtime, store: FeatureStore, owner: psycopg.Connection
) -> None:
    member = uuid.uuid4()
    today = dt.datetime.now(dt.UTC).date()
    put_day(owner, member, today - dt.timedelta(days=1), resting_hr=60)
    _drain(ctx, store)
    assert _online(store, member)["resting_hr_7d"] == 60
    # Data for five days ago arrives late: the latest row's baseline changes.
    put_day(owner, member, today - dt.timedelta(days=5), resting_hr=80)
    _drain(ctx, store)
    got = _online(store, member)
    assert got["resting_hr"] == 60 and got["resting_hr_7d"] == 70


def test_a_failed_write_leaves_the_claim_queued(
    ctx: Runtime, store: FeatureStore, owner: psycopg.Connection
) -> None:
    member = uuid.uuid4()
    put_day(owner, member, dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))

    class Broken:
        """A store whose online write fails (Redis down), otherwise the real one."""

        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        def write_to_online_store(self, *a: object, **k: object) -> None:
            raise ConnectionError("redis is down")

    try:
        materialise(ctx.db, Broken(), batch_size=10_000)  # type: ignore[arg-type]
    except ConnectionError:
        pass
    else:
        raise AssertionError("the write failure must surface")
    assert _queued(owner, member) == 1
    _drain(ctx, store)
    assert _online(store, member)["steps"] == 8000


def test_one_run_at_a_time(ctx: Runtime, store: FeatureStore, owner: psycopg.Connection) -> None:
    from backend.features.materialise import LOCK

    member = uuid.uuid4()
    put_day(owner, member, dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
    with ctx.db.connect("features", autocommit=True) as other:
        other.execute("select pg_advisory_lock(%s)", (LOCK,))
        assert materialise(ctx.db, store).skipped
    _drain(ctx, store)
    assert _online(store, member)["steps"] == 8000


def test_the_served_deployment_materialises(
    ctx: Runtime, store: FeatureStore, owner: psycopg.Connection
) -> None:
    member = uuid.uuid4()
    put_day(owner, member, dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1), steps=4321)
    deployment, state = run_deployment(ctx, "materialise-features", {})
    assert deployment["schedules"], "it runs on a schedule"
    assert state == "COMPLETED"
    # Our run or a scheduled one took it: either way it is online now.
    assert _online(store, member)["steps"] == 4321
