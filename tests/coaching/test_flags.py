"""Flags as pure functions of a member's days: personal baselines are robust (median/MAD)
and never used on too little data; generic rules need their days; labs are flagged
against the catalogue's ranges. And, on the stack's database, the detector's memory: one
alert per episode (a new one after a quiet day alerts again), a lasting condition
reminded only every `REMIND_DAYS`."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from backend.coaching import alerts
from backend.coaching import flags as fl
from backend.coaching.rules import BY_ID, MIN_BASELINE_DAYS, REMIND_DAYS
from backend.runtime import Runtime

DAY = dt.date(2026, 10, 31)
RHR_UP = BY_ID["rhr-up"]


def _series(
    baseline: Sequence[float | None], recent: Sequence[float], metric: str = "resting_hr"
) -> fl.Series:
    values = [*baseline, *recent]
    first = DAY - dt.timedelta(days=len(values) - 1)
    return {first + dt.timedelta(days=i): {metric: v} for i, v in enumerate(values)}


def test_a_personal_rule_needs_enough_days_of_baseline() -> None:
    steady = [60.0, 61.0, 59.0, 60.5]
    short = (steady * 10)[: MIN_BASELINE_DAYS - 1]
    assert fl.evaluate(RHR_UP, _series(short, [75, 76, 74]), DAY) is None
    # The same with days missing in between: still too few with data.
    gappy = [v if i % 3 == 0 else None for i, v in enumerate((steady * 10)[:28])]
    assert fl.evaluate(RHR_UP, _series(gappy, [75, 76, 74]), DAY) is None
    enough = (steady * 10)[:MIN_BASELINE_DAYS]
    flag = fl.evaluate(RHR_UP, _series(enough, [75, 76, 74]), DAY)
    assert flag is not None and flag.baseline is not None
    assert flag.baseline.days == MIN_BASELINE_DAYS and flag.baseline.median == 60.25
    assert flag.value == 75 and flag.coverage_days == MIN_BASELINE_DAYS + 3
    assert [v for _, v in flag.evidence] == [75, 76, 74]


def test_the_baseline_is_robust_and_scales_with_the_members_spread() -> None:
    steady = [60.0, 61.0, 59.0, 60.5] * 7
    # One wild day in the baseline changes nothing (a median, not a mean).
    spiked = [*steady[:-1], 140.0]
    assert fl.evaluate(RHR_UP, _series(spiked, [70, 70, 70]), DAY) is not None
    # +10 is news for a steady member, not for one whose days swing by 8.
    swinging = [52.0, 68.0, 56.0, 64.0] * 7
    assert fl.evaluate(RHR_UP, _series(steady, [70, 70, 70]), DAY) is not None
    assert fl.evaluate(RHR_UP, _series(swinging, [70, 70, 70]), DAY) is None
    # A drop is not what this rule is about.
    assert fl.evaluate(RHR_UP, _series(steady, [45, 45, 45]), DAY) is None


def test_generic_rules_need_their_days_and_say_their_threshold() -> None:
    sleep = BY_ID["sleep-short"]
    two_nights = _series([], [240, 250], "sleep_minutes")
    assert fl.evaluate(sleep, two_nights, DAY) is None  # needs 3 of the last 5 nights
    flag = fl.evaluate(sleep, _series([], [240, 250, 260], "sleep_minutes"), DAY)
    assert flag is not None and flag.baseline is None and flag.value == 250
    assert flag.threshold == "5-day median < 300 min" and flag.coverage_days == 3


def test_flags_only_read_categories_the_viewer_may_see() -> None:
    series = _series([60.0] * 28, [80, 80, 80])
    assert {f.rule.id for f in fl.flags(series, DAY, {"wearables"})} == {"rhr-up"}
    assert fl.flags(series, DAY, {"sleep", "labs"}) == []


def test_labs_against_the_catalogue() -> None:
    at = dt.datetime(2026, 10, 1, 8, tzinfo=dt.UTC)
    found = fl.lab_flags(
        [("4548-4", 6.3, "%", at), ("2339-0", 131.0, "mg/dL", at), ("2085-9", 55.0, "mg/dL", at)],
        DAY,
    )
    assert [(f.rule.id, f.rule.metric) for f in found] == [
        ("lab-out-of-range", "4548-4"),
        ("lab-out-of-range", "2339-0"),
        ("glucose-high", "2339-0"),
    ]
    assert found[0].threshold == "outside 4..5.6 %"
    # an open-ended range reads as what it is (it said "outside -..129 mg/dL")
    (ldl,) = fl.lab_flags([("13457-7", 136.0, "mg/dL", at)], DAY)
    assert ldl.threshold == "above 129 mg/dL"
    assert found[0].evidence_json() == [
        {"code": "4548-4", "at": at.isoformat(), "value": 6.3, "unit": "%"}
    ]
    assert fl.lab_flags([("x-unknown", 1e6, "U", at)], DAY) == []


def test_the_detector_remembers(ctx: Runtime) -> None:
    member = uuid.uuid4()
    first = DAY - dt.timedelta(days=69)
    with ctx.db.connect("owner") as conn:
        for i in range(70):
            day = first + dt.timedelta(days=i)
            # Hypertensive throughout; 4-day resting heart rate episodes from days 40 and 48.
            rhr = 75.0 if 40 <= i < 44 or 48 <= i < 52 else 60.0 + (i % 3) * 0.5
            conn.execute(
                "insert into analytics.member_daily (member_id, day, event_ts, resting_hr,"
                " bp_systolic, wear_minutes) values (%s, %s, %s, %s, 150, 0)",
                (member, day, dt.datetime.combine(day, dt.time(), dt.UTC), rhr),
            )
    try:
        with ctx.db.connect("refiner") as conn:
            done = alerts.detect(conn, first, DAY, [member])
            # Run again day by day, as the daily flow would: nothing new.
            again = sum(
                alerts.detect(
                    conn, first + dt.timedelta(days=i), first + dt.timedelta(days=i), [member]
                ).inserted
                for i in range(70)
            )
        with ctx.db.connect("owner") as conn:
            got = conn.execute(
                "select rule_id, day from analytics.alerts where member_id = %s order by day",
                (member,),
            ).fetchall()
    finally:
        with ctx.db.connect("owner") as conn:
            conn.execute("delete from analytics.alerts where member_id = %s", (member,))
            conn.execute("delete from analytics.member_daily where member_id = %s", (member,))
    assert again == 0 and done.inserted == len(got)
    bp = [(d - first).days for r, d in got if r == "bp-high"]
    assert bp == [1, 1 + REMIND_DAYS, 1 + 2 * REMIND_DAYS]  # the second day: min_days = 2
    # One alert per episode: the second comes after days without the flag.
    assert [(d - first).days for r, d in got if r == "rhr-up"] == [41, 49]
