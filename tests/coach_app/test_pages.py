"""What the coach app decides without the stack: the resolution a range gets, the points a
chart keeps, and that everything the backend says is escaped before it is shown."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from backend.coach_app import zoom
from backend.coach_app.member import consent_html, evidence_html
from backend.coach_app.triage import table_html

T0 = dt.datetime(2026, 11, 27, 13, 37, 11, tzinfo=dt.UTC)


def test_ninety_days_are_daily_and_aligned_to_whole_days() -> None:
    w = zoom.window_for(T0 - dt.timedelta(days=90), T0)
    assert w.bucket == "day"
    assert w.start == dt.datetime(2026, 8, 29, tzinfo=dt.UTC)
    assert w.end == dt.datetime(2026, 11, 28, tzinfo=dt.UTC)


def test_a_week_is_hourly_and_a_day_or_less_is_raw() -> None:
    week = zoom.window_for(T0 - dt.timedelta(days=7), T0)
    assert week.bucket == "hour"
    assert week.start.minute == week.end.minute == week.end.second == 0
    assert week.start <= T0 - dt.timedelta(days=7) and week.end >= T0
    assert zoom.window_for(T0 - dt.timedelta(days=1), T0).bucket is None
    assert zoom.window_for(T0 - dt.timedelta(hours=1), T0).bucket is None


@given(st.lists(st.floats(-1e6, 1e6), min_size=0, max_size=20_000))
def test_downsampling_keeps_the_extremes_and_the_order(values: list[float]) -> None:
    points = list(range(len(values)))
    kept = zoom.downsample(points, values, limit=400)
    assert kept == sorted(kept)
    if len(values) <= 400:
        assert kept == points
    else:
        assert len(kept) <= 400
    shown = [values[i] for i in kept]
    if values:
        assert max(values) in shown and min(values) in shown


def test_what_the_backend_says_is_escaped() -> None:
    evil = "<script>alert(1)</script>"
    row = {
        "member": "m1",
        "last_sync": None,
        "wear_coverage_7d": 0.5,
        "consent": {"coaching": "granted", "withheld_categories": [evil]},
        "open_alerts": 1,
        "score": 3,
        "flags": [
            {
                "rule": evil,
                "version": 1,
                "kind": "generic",
                "metric": evil,
                "value": 1.0,
                "threshold": evil,
                "baseline": None,
                "coverage_days": 3,
                "explanation": evil,
            }
        ],
    }
    page = table_html({"as_of": evil, "members": [row]}, T0)
    alert = {
        "status": "open",
        "explanation": evil,
        "rule": evil,
        "version": 1,
        "day": "2026-11-27",
        "fired_at": evil,
        "baseline": None,
        "evidence": [{"at": evil, "code": evil, "value": 1.0, "unit": evil}],
    }
    consent = {
        "effective": [
            {"purpose": "coaching", "category": evil, "granted": False, "recorded_at": evil}
        ]
    }
    for html in (page, evidence_html(alert), consent_html(consent)):
        assert "<script>" not in html


def test_a_withdrawal_reads_as_the_members_choice() -> None:
    html = consent_html(
        {
            "effective": [
                {
                    "purpose": "coaching",
                    "category": "wearables",
                    "granted": False,
                    "recorded_at": "2026-11-27T10:00:00+00:00",
                },
                {
                    "purpose": "coaching",
                    "category": "labs",
                    "granted": True,
                    "recorded_at": "2026-11-01T10:00:00+00:00",
                },
            ]
        }
    )
    assert "withheld by the member&#x27;s choice (withdrawn 2026-11-27)" in html
    assert 'data-category="labs"><td>labs</td><td>shared with you' in html


def test_a_refused_token_asks_for_a_new_login() -> None:
    import httpx
    import pytest

    from backend.coach_app.client import BackendRefused, NotYours, _answer

    with pytest.raises(NotYours):
        _answer(httpx.Response(404, json={"detail": "no such member"}))
    for status in (401, 403):
        with pytest.raises(BackendRefused, match="log out and in again"):
            _answer(httpx.Response(status, json={"detail": "invalid token"}))
    with pytest.raises(BackendRefused, match="422"):
        _answer(httpx.Response(422, json={"detail": "bad"}))
