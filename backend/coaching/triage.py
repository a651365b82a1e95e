"""The triage list: a coach's assigned members, worst first, each with last sync, wear
coverage, consent, open alerts and the flags that fire today.

A handful of set-wise queries for the whole list (never one per member): the coach's
current assignments with each member's coaching consent, then only for what each member
shares: the daily summaries of the last `recent_window_start` days, the time of the
newest rollup, open alerts and the latest lab results. A member who shares nothing is a
row with consent withdrawn and no data.

Score (higher = worse), so a coach reads from the top: 3 per generic flag, 2 per personal
flag, 1 per open alert, 2 when nothing synced for `STALE` (or ever), 1 when the watch was
worn less than half the time over 7 days."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg

from backend.coaching import flags as fl
from backend.coaching import labs
from backend.coaching.rules import BY_ID
from backend.governance.consent import CATEGORIES, code_categories

STALE = dt.timedelta(days=3)
DAILY_METRICS = (
    "resting_hr",
    "hrv_ms",
    "sleep_minutes",
    "sleep_efficiency",
    "steps",
    "active_minutes",
    "wear_minutes",
    "bp_systolic",
    "bp_diastolic",
    "body_weight_kg",
)
# The consent category of each member_daily column (wear time is heart-rate minutes).
METRIC_CATEGORY = {
    "resting_hr": "wearables",
    "hrv_ms": "wearables",
    "wear_minutes": "wearables",
    "sleep_minutes": "sleep",
    "sleep_efficiency": "sleep",
    "steps": "activity",
    "active_minutes": "activity",
    "bp_systolic": "vitals",
    "bp_diastolic": "vitals",
    "body_weight_kg": "vitals",
}

# One member's days (the daily route).
MEMBER_DAILY = """
select day, resting_hr, hrv_ms, sleep_minutes, sleep_efficiency, steps,
       active_minutes, wear_minutes, bp_systolic, bp_diastolic, body_weight_kg
  from analytics.member_daily
 where member_id = %s and day >= %s and day <= %s order by day
"""

_ASSIGNED = """
select a.member_id,
       coalesce((select array_agg(c.category) from governance.consent_effective c
                  where c.member_id = a.member_id and c.purpose = 'coaching' and c.granted),
                '{}'::text[])
  from governance.coach_assignments a
 where a.coach = %(coach)s and a.revoked_at is null
 order by a.member_id
"""

_DAILY = """
select member_id, day, resting_hr, hrv_ms, sleep_minutes, sleep_efficiency, steps,
       active_minutes, wear_minutes, bp_systolic, bp_diastolic, body_weight_kg
  from analytics.member_daily
 where member_id = any(%(members)s) and day >= %(since)s and day <= %(today)s
 order by member_id, day
"""

# The newest data of each member among the codes they share (rollup_daily: one row per
# member x code x day, so this reads a few hundred rows per member at most).
_LAST_SYNC = """
select r.member_id, max(r.last_at)
  from analytics.rollup_daily r
  join unnest(%(members)s::uuid[], %(shared)s::text[]) as m(member_id, categories)
    on m.member_id = r.member_id
  join unnest(%(codes)s::text[], %(code_categories)s::text[]) as cc(code, category)
    on cc.code = r.code and cc.category = any(string_to_array(m.categories, ','))
 where r.bucket >= %(since)s
 group by r.member_id
"""

_OPEN_ALERTS = """
select member_id, rule_id from analytics.alerts
 where member_id = any(%(members)s) and status = 'open'
"""


@dataclass
class Row:
    member: uuid.UUID
    categories: frozenset[str]
    last_sync: dt.datetime | None = None
    wear_coverage_7d: float | None = None
    open_alerts: int = 0
    flags: list[fl.Flag] = field(default_factory=list)

    @property
    def score(self) -> float:
        s = sum(3 if f.rule.kind == "generic" else 2 for f in self.flags) + self.open_alerts
        if self.categories:
            now = dt.datetime.now(dt.UTC)
            if self.last_sync is None or now - self.last_sync > STALE:
                s += 2
            if self.wear_coverage_7d is not None and self.wear_coverage_7d < 0.5:
                s += 1
        return float(s)

    def to_json(self) -> dict[str, Any]:
        return {
            "member": str(self.member),
            "last_sync": self.last_sync.isoformat() if self.last_sync else None,
            "wear_coverage_7d": self.wear_coverage_7d,
            "consent": {
                "coaching": "granted" if self.categories else "withdrawn",
                "withheld_categories": sorted(set(CATEGORIES) - self.categories),
            },
            "open_alerts": self.open_alerts,
            "score": self.score,
            "flags": [f.to_json() for f in self.flags],
        }


def days_of(rows: list[tuple[Any, ...]], categories: frozenset[str]) -> fl.Days:
    """member_daily rows (day first, then `DAILY_METRICS`, in day order) as a member's
    days, without the measures the viewer may not see."""
    visible = {m for m in DAILY_METRICS if METRIC_CATEGORY[m] in categories}
    return fl.Days.from_rows(rows, DAILY_METRICS, visible)


def triage(conn: psycopg.Connection, coach: str, today: dt.date | None = None) -> list[Row]:
    """The coach's current members, worst first (then by member id, for a stable order)."""
    today = today or dt.datetime.now(dt.UTC).date()
    assigned = conn.execute(_ASSIGNED, {"coach": coach}).fetchall()
    rows = {m: Row(m, frozenset(cats or ())) for m, cats in assigned}
    sharing = [m for m, r in rows.items() if r.categories]
    if sharing:
        _fill(conn, rows, sharing, today)
    conn.rollback()
    return sorted(rows.values(), key=lambda r: (-r.score, str(r.member)))


def _fill(
    conn: psycopg.Connection, rows: dict[uuid.UUID, Row], sharing: list[uuid.UUID], today: dt.date
) -> None:
    since = fl.recent_window_start(today)
    daily: dict[uuid.UUID, list[tuple[Any, ...]]] = defaultdict(list)
    found = conn.execute(_DAILY, {"members": sharing, "since": since, "today": today}).fetchall()
    for r in found:
        daily[r[0]].append(r[1:])
    codes, code_cats = code_categories()
    for member, at in conn.execute(
        _LAST_SYNC,
        {
            "members": sharing,
            "shared": [",".join(sorted(rows[m].categories)) for m in sharing],
            "codes": codes,
            "code_categories": code_cats,
            "since": today - dt.timedelta(days=90),
        },
    ):
        rows[member].last_sync = at
    for member, rule_id in conn.execute(_OPEN_ALERTS, {"members": sharing}):
        rule = BY_ID.get(rule_id)
        if rule is not None and rule.category in rows[member].categories:
            rows[member].open_alerts += 1
    with_labs = [m for m in sharing if "labs" in rows[m].categories]
    latest: dict[uuid.UUID, list[tuple[str, float, str, dt.datetime]]] = defaultdict(list)
    if with_labs:
        for member, code, value, unit, at in conn.execute(
            labs.LATEST_MANY,
            {
                "members": with_labs,
                "labs": list(labs.LAB_CODES),
                "since": dt.datetime.now(dt.UTC) - labs.HISTORY,
            },
        ):
            latest[member].append((code, float(value), unit, at))
    week_ago = today - dt.timedelta(days=7)
    for member in sharing:
        row = rows[member]
        days = days_of(daily.get(member, []), row.categories)
        row.flags = fl.flags(days, today, row.categories) + fl.lab_flags(
            latest.get(member, []), today
        )
        if "wearables" in row.categories:
            # The last 7 whole days (today is not over yet).
            worn = sum(
                v for _, v in days.window("wear_minutes", week_ago, today - dt.timedelta(days=1))
            )
            row.wear_coverage_7d = round(min(1.0, worn / (7 * 1440)), 3)
