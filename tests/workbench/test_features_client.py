"""The workbench's feature calls against the running stack: the catalogue, and
point-in-time training sets (no value from after a row's moment, the row's time zone
kept, no member id, withdrawn members absent, `aggregate` studies refused)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator

import pandas as pd
import pytest

from backend.governance import consent
from backend.keys.study_keys import StudyKeys, pseudonym
from backend.runtime import Runtime
from tests.workbench import studies
from workbench import Workbench, WorkbenchError, connect

ZURICH = zoneinfo.ZoneInfo("Europe/Zurich")


@pytest.fixture
def wb(ctx: Runtime, study: studies.Study) -> Iterator[Workbench]:
    client = connect(ctx.backend_url, study.token, str(ctx.layout.ca_cert))
    try:
        yield client
    finally:
        client.close()


def _pseudonyms(ctx: Runtime, s: studies.Study) -> list[str]:
    """What the backend calls each member in this study (the test knows the key)."""
    key = StudyKeys(ctx.layout.keys / "studies", ctx.kms()).key(s.study)
    return [pseudonym(key, m) for m in s.members]


def test_feature_views_lists_the_catalogue(wb: Workbench) -> None:
    views = wb.feature_views()
    assert {"daily_activity", "cardio", "sleep", "latest_labs"} <= set(views["view"])
    cardio = set(views.loc[views["view"] == "cardio", "feature"])
    assert {"resting_hr", "hrv_ms"} <= cardio
    daily = views[(views["view"] == "daily_activity") & (views["feature"] == "wear_minutes")]
    assert len(daily) == 1


def test_training_set_is_point_in_time_and_keeps_the_zone(
    ctx: Runtime, wb: Workbench, study: studies.Study
) -> None:
    names = _pseudonyms(ctx, study)
    first = (studies.END - dt.timedelta(days=studies.DAYS)).date()
    day = 100  # its summary is known at the end of the day: first + 101 days, 00:00 UTC
    known = dt.datetime.combine(first + dt.timedelta(days=day + 1), dt.time(), dt.UTC)
    moments = [
        known - dt.timedelta(microseconds=1),  # a moment before: the day before's value
        known,  # inclusive: the day's own value
        (known + dt.timedelta(hours=11)).astimezone(ZURICH),  # same, in another zone
    ]
    entity = pd.DataFrame({"pseudonym": [names[3]] * 3, "at": pd.Series(moments, dtype=object)})
    got = wb.training_set(study.study, entity, features=["cardio:resting_hr"])
    assert list(got.columns) == ["pseudonym", "at", "cardio__resting_hr"]
    assert list(got["pseudonym"]) == [names[3]] * 3
    assert [t.utcoffset() for t in got["at"]] == [t.utcoffset() for t in moments]
    assert [t == m for t, m in zip(got["at"], moments, strict=True)] == [True] * 3
    values = list(got["cardio__resting_hr"])
    assert values[0] == pytest.approx(studies.resting_hr(3, day - 1))
    assert values[1] == pytest.approx(studies.resting_hr(3, day))
    assert values[2] == pytest.approx(studies.resting_hr(3, day))
    # A column in one zone comes back as that zone's datetime dtype.
    same = entity.assign(at=pd.to_datetime([known] * 3, utc=True).tz_convert(ZURICH))
    again = wb.training_set(study.study, same, service="research_model")
    assert str(again["at"].dt.tz) == "Europe/Zurich"
    assert not any("member" in c for c in again.columns)
    assert any(c.startswith("cardio__") for c in again.columns)


def test_withdrawn_member_is_absent_from_the_next_training_set(
    ctx: Runtime, wb: Workbench, study: studies.Study
) -> None:
    names = _pseudonyms(ctx, study)
    at = pd.Timestamp(studies.END)
    entity = pd.DataFrame({"pseudonym": names[:3], "at": [at] * 3})
    before = wb.training_set(study.study, entity, features=["cardio:resting_hr"])
    assert set(before["pseudonym"]) == set(names[:3])
    with ctx.db.connect("backend") as conn:
        for category in consent.CATEGORIES:
            consent.record(
                conn,
                member=study.members[0],
                purpose=consent.study_purpose(study.study),
                category=category,
                granted=False,
                consent_version="v1",
                recorded_by="test",
            )
    after = wb.training_set(study.study, entity, features=["cardio:resting_hr"])
    assert set(after["pseudonym"]) == set(names[1:3])


def test_naive_moments_are_refused_before_asking(wb: Workbench, study: studies.Study) -> None:
    entity = pd.DataFrame({"pseudonym": ["x"], "at": [pd.Timestamp("2026-10-01")]})
    with pytest.raises(WorkbenchError, match="time-zone aware"):
        wb.training_set(study.study, entity)


def test_aggregate_study_gives_no_training_set(
    ctx: Runtime, wb: Workbench, study: studies.Study
) -> None:
    studies.set_level(ctx, study.study, "aggregate")
    try:
        entity = pd.DataFrame({"pseudonym": ["x"], "at": [pd.Timestamp(studies.END)]})
        with pytest.raises(WorkbenchError, match=r"^403"):
            wb.training_set(study.study, entity)
    finally:
        studies.set_level(ctx, study.study, "row-level")
