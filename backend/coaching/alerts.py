"""Alerts: the rules evaluated on every member-day of the analytics zone, stored once each
with the rule's version, the values that made it fire and the member's baseline; and
what a coach did with them.

Detection (`detect`, run by the `detect-alerts` flow as the refiner role, which owns the
analytics zone) reads `analytics.member_daily`, evaluates each rule as of each day in the
range, and inserts what fires with ON CONFLICT DO NOTHING on (member, rule, version,
metric, day): a re-run over the same days adds nothing. Lab results of those days are
checked against the lab catalogue (`lab-out-of-range`, `glucose-high`), one alert each.
An episode is one alert, not one a day: see `_quiet` (alerts already stored count).

Consent is applied when alerts are read, not here: an alert reads one category (its
rule's), and only a viewer who may see that category sees it, so a withdrawal hides
alerts at once and a new grant shows them again."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from backend.coaching import flags as fl
from backend.coaching import labs as lab_catalogue
from backend.coaching.rules import BY_ID, REFRACTORY_DAYS, REMIND_DAYS, RULES, Rule
from backend.coaching.triage import days_of
from backend.governance.consent import CATEGORIES

Status = Literal["open", "acknowledged", "dismissed"]
Action = Literal["acknowledge", "dismiss"]
STATUS_OF: dict[str, Status] = {"acknowledge": "acknowledged", "dismiss": "dismissed"}

_DAILY = """
select member_id, day, resting_hr, hrv_ms, sleep_minutes, sleep_efficiency, steps,
       active_minutes, wear_minutes, bp_systolic, bp_diastolic, body_weight_kg
  from analytics.member_daily
 where day >= %(since)s and day <= %(end)s
   and (%(members)s::uuid[] is null or member_id = any(%(members)s))
 order by member_id, day
"""

_FIRED = """
select member_id, rule_id, day from analytics.alerts
 where day >= %(since)s and day <= %(end)s
   and (%(members)s::uuid[] is null or member_id = any(%(members)s))
"""

_LOCK = 0x72_6A_76_61  # "rjva"

_INSERT = """
insert into analytics.alerts (member_id, rule_id, rule_version, kind, metric, day, value,
                              threshold, explanation, evidence, baseline)
values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
on conflict (member_id, rule_id, rule_version, metric, day) do nothing
"""


@dataclass(frozen=True)
class Detected:
    members: int
    member_days: int  # member x day evaluated
    fired: int  # flags that fired (before the refractory period)
    inserted: int  # new alerts stored
    seconds: float


def detect(
    conn: psycopg.Connection,
    start: dt.date,
    end: dt.date,
    members: Iterable[uuid.UUID] | None = None,
    rules: tuple[Rule, ...] = RULES,
    labs: bool = True,
) -> Detected:
    """Evaluate `rules` as of every day in [start, end] for every member with daily
    summaries (or only `members`), and, with `labs`, every lab result of those days
    against the lab catalogue; store new alerts; one transaction."""
    t0 = time.perf_counter()
    wanted = list(members) if members is not None else None
    since = fl.recent_window_start(start)
    fired_before: dict[tuple[uuid.UUID, str], list[dt.date]] = defaultdict(list)
    daily: dict[uuid.UUID, list[tuple[Any, ...]]] = defaultdict(list)
    with conn.transaction():
        # One detector at a time (the scheduled flow, `rejuve alerts detect`): each reads
        # the alerts stored so far to keep an episode to one alert.
        conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK,))
        params = {"since": since, "end": end, "members": wanted}
        for member, *rest in conn.execute(_DAILY, params):
            daily[member].append(tuple(rest))
        window = {**params, "since": start - dt.timedelta(days=REMIND_DAYS)}
        for member, rule_id, day in conn.execute(_FIRED, window):
            fired_before[(member, rule_id)].append(day)
        everything = frozenset(CATEGORIES)
        fired = inserted = evaluated = 0
        rows = []
        for member, days in daily.items():
            series = days_of(days, everything)
            day = start
            while day <= end:
                if series.has(day):
                    evaluated += 1
                    for flag in fl.flags(series, day, everything, rules):
                        fired += 1
                        past = fired_before[(member, flag.rule.id)]
                        if _quiet(past, flag, series):
                            continue
                        past.append(day)
                        rows.append(_row(member, flag))
                day += dt.timedelta(days=1)
        if labs:
            found = _lab_alerts(conn, start, end, wanted)
            fired += len(found)
            rows += found
        if rows:
            with conn.cursor() as cur:
                cur.executemany(_INSERT, rows)
                inserted = cur.rowcount
    return Detected(len(daily), evaluated, fired, max(inserted, 0), time.perf_counter() - t0)


# Each member's latest lab result per code and UTC day, from the daily rollups (`last` is
# the day's latest value; labs come a few times a year, rarely twice a day).
_LAB_DAYS = """
select member_id, code, last, unit, last_at from analytics.rollup_daily
 where code = any(%(labs)s) and bucket >= %(lo)s and bucket < %(hi)s
   and (%(members)s::uuid[] is null or member_id = any(%(members)s))
"""


def _lab_alerts(
    conn: psycopg.Connection, start: dt.date, end: dt.date, members: list[uuid.UUID] | None
) -> list[tuple[Any, ...]]:
    """An alert per lab result outside its reference range (and per high glucose): each
    result is news of its own, so no quiet period; one per member, code and day."""
    lo = dt.datetime.combine(start, dt.time(), dt.UTC)
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    rows = []
    params = {"labs": list(lab_catalogue.LAB_CODES), "lo": lo, "hi": hi, "members": members}
    for member, code, value, unit, at in conn.execute(_LAB_DAYS, params):
        for flag in fl.lab_flags([(code, float(value), unit, at)], at.date()):
            rows.append(_row(member, flag))
    return rows


def _quiet(past: list[dt.date], flag: fl.Flag, series: fl.Days) -> bool:
    """Whether the flag's rule stays quiet on its day, given the rule's earlier alerts for
    this member. A generic rule (a state, such as high blood pressure) alerts once per
    `REMIND_DAYS`. A personal rule stays quiet `REFRACTORY_DAYS` after an alert, and after
    that while the flag has fired every day since the alert (the same episode, reminded
    after `REMIND_DAYS`); once it has stopped, firing again is a new episode."""
    ago = [(flag.day - d).days for d in past if d <= flag.day]
    if not ago:
        return False
    last = min(ago)
    if flag.rule.kind == "generic":
        return last < REMIND_DAYS
    if last < REFRACTORY_DAYS:
        return True
    if last >= REMIND_DAYS:
        return False
    return all(
        fl.evaluate(flag.rule, series, flag.day - dt.timedelta(days=back)) is not None
        for back in range(1, last)
    )


def _row(member: uuid.UUID, flag: fl.Flag) -> tuple[Any, ...]:
    r = flag.rule
    return (
        member,
        r.id,
        r.version,
        r.kind,
        r.metric,
        flag.day,
        flag.value,
        flag.threshold,
        flag.explanation,
        Jsonb(flag.evidence_json()),
        Jsonb(flag.baseline.to_json()) if flag.baseline else None,
    )


# -- reading and acting -------------------------------------------------------------------

_COLUMNS = (
    "alert_id, rule_id, rule_version, fired_at, day, status, explanation, evidence, baseline,"
    " kind, metric, value, threshold, status_note, status_by, status_at"
)
MAX_ALERTS = 500


@dataclass(frozen=True)
class Alert:
    id: uuid.UUID
    rule: str
    version: int
    fired_at: dt.datetime
    day: dt.date
    status: Status
    explanation: str
    evidence: list[dict[str, Any]]
    baseline: dict[str, Any] | None
    kind: str
    metric: str
    value: float
    threshold: str
    note: str | None
    status_by: str | None
    status_at: dt.datetime | None

    @property
    def category(self) -> str | None:
        rule = BY_ID.get(self.rule)
        return rule.category if rule else None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "rule": self.rule,
            "version": self.version,
            "fired_at": self.fired_at.isoformat(),
            "day": self.day.isoformat(),
            "status": self.status,
            "explanation": self.explanation,
            "evidence": self.evidence,
            "baseline": self.baseline,
            "kind": self.kind,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "note": self.note,
            "status_by": self.status_by,
            "status_at": self.status_at.isoformat() if self.status_at else None,
        }


def for_member(
    conn: psycopg.Connection,
    member: uuid.UUID,
    categories: frozenset[str],
    status: Literal["open", "all"] = "open",
) -> list[Alert]:
    """The member's alerts whose rule reads a category in `categories`, newest first."""
    rows = conn.execute(
        f"select {_COLUMNS} from analytics.alerts"  # noqa: S608 (column list is ours)
        " where member_id = %(member)s and (%(all)s or status = 'open')"
        " order by day desc, fired_at desc, rule_id limit %(limit)s",
        {"member": member, "all": status == "all", "limit": MAX_ALERTS},
    ).fetchall()
    conn.rollback()
    alerts = [Alert(*r) for r in rows]
    return [a for a in alerts if a.category in categories]


def member_of(conn: psycopg.Connection, alert: uuid.UUID) -> tuple[uuid.UUID, str] | None:
    """The member an alert is about, and its rule's id."""
    row = conn.execute(
        "select member_id, rule_id from analytics.alerts where alert_id = %s", (alert,)
    ).fetchone()
    conn.rollback()
    return (row[0], row[1]) if row else None


def act(
    conn: psycopg.Connection, alert: uuid.UUID, action: Action, note: str | None, actor: str
) -> Alert | None:
    """Acknowledge or dismiss an alert (the backend role): its status, and an event in its
    history. Acting again replaces the status (a dismissal after an acknowledgement)."""
    with conn.transaction():
        row = conn.execute(
            "update analytics.alerts set status = %s, status_note = %s, status_by = %s,"  # noqa: S608 (column list is ours)
            f" status_at = now() where alert_id = %s returning {_COLUMNS}",
            (STATUS_OF[action], note, actor, alert),
        ).fetchone()
        if row is None:
            return None
        conn.execute(
            "insert into analytics.alert_events (alert_id, action, note, actor)"
            " values (%s, %s, %s, %s)",
            (alert, action, note, actor),
        )
    return Alert(*row)
