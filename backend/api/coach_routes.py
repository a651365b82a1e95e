"""The coach app's routes: the triage list, a member's alerts (acknowledge, dismiss), labs
with reference ranges and daily summaries. Same path as every governed route: the guard
authenticates, authorises by role and audits (refusals too); which member and which data
is decided in SQL by the row rules (assigned coach with the member's coaching consent by
category, or the member themself). Another coach's member or alert is a 404, audited."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from backend.api.governed import GOVERNED_RESPONSES, Gov, Guard, Ticket
from backend.coaching import alerts as al
from backend.coaching import labs
from backend.coaching import triage as tr
from backend.coaching.access import visible_categories
from backend.coaching.rules import BY_ID
from backend.exceptions import NotFound
from backend.query.viewer import target_member

router = APIRouter(prefix="/v1", tags=["coaching"], responses=GOVERNED_RESPONSES)


class Baseline(BaseModel):
    median: float
    mad: float
    days: int


class FlagOut(BaseModel):
    rule: str
    version: int
    kind: Literal["generic", "personal"]
    metric: str
    value: float
    threshold: str
    baseline: Baseline | None
    coverage_days: int
    explanation: str


class ConsentSummary(BaseModel):
    coaching: Literal["granted", "withdrawn"]
    withheld_categories: list[str]


class TriageRow(BaseModel):
    member: str
    last_sync: dt.datetime | None
    wear_coverage_7d: float | None = Field(description="0..1; null when wearables are withheld")
    consent: ConsentSummary
    open_alerts: int
    score: float = Field(description="higher = needs attention sooner")
    flags: list[FlagOut]


class Triage(BaseModel):
    as_of: dt.datetime
    members: list[TriageRow]


class Evidence(BaseModel):
    code: str
    at: dt.datetime
    value: float
    unit: str


class AlertOut(BaseModel):
    id: str
    rule: str
    version: int
    fired_at: dt.datetime
    day: dt.date
    status: Literal["open", "acknowledged", "dismissed"]
    explanation: str
    evidence: list[Evidence]
    baseline: Baseline | None
    kind: str
    metric: str
    value: float
    threshold: str
    note: str | None = None
    status_by: str | None = None
    status_at: dt.datetime | None = None


class AlertAction(BaseModel):
    note: Annotated[str | None, Field(max_length=2000)] = None


class LabOut(BaseModel):
    code: str
    name: str
    value: float | None = Field(description="null for a coded or text result")
    unit: str
    at: dt.datetime
    ref_low: float | None
    ref_high: float | None
    flag: Literal["low", "high", "normal"] | None
    latest: bool = Field(description="the newest result of its code")
    value_code: str | None = Field(None, description="a coded result's concept code")
    value_system: str | None = Field(None, description="its code system")
    value_text: str | None = Field(None, description='its display ("Detected"), or a text result')
    value_boolean: bool | None = None


class DailyRow(BaseModel):
    day: dt.date
    resting_hr: float | None = None
    hrv_ms: float | None = None
    sleep_minutes: float | None = None
    sleep_efficiency: float | None = None
    steps: float | None = None
    active_minutes: float | None = None
    wear_minutes: float | None = None
    bp_systolic: float | None = None
    bp_diastolic: float | None = None
    body_weight_kg: float | None = None


@router.get("/coach/triage", response_model=Triage)
def coach_triage(
    gov: Gov,
    ticket: Annotated[
        Ticket, Guard("coach/triage", "read", action="coaching.triage", purpose="coaching")
    ],
) -> Triage:
    """The caller's assigned members, worst first: last sync, wear coverage over 7 days,
    consent, open alerts, and the flags that fire today (each with its rule, threshold,
    baseline and the days of data behind it)."""
    now = dt.datetime.now(dt.UTC)
    with gov.query_pool.connection() as conn:
        rows = tr.triage(conn, ticket.viewer.user, now.date())
    ticket.row_count = len(rows)
    return Triage.model_validate({"as_of": now, "members": [r.to_json() for r in rows]})


def _categories(gov: Gov, ticket: Ticket, member: str) -> tuple[uuid.UUID, frozenset[str]]:
    with gov.query_pool.connection() as conn:
        target = target_member(conn, ticket.viewer, member)
        seen = None if target is None else visible_categories(conn, ticket.viewer, target)
    if target is None or seen is None:
        # Not "forbidden": whether such a member exists is not the caller's to learn.
        raise NotFound("no such member")
    return target, seen


@router.get("/members/{member}/alerts", response_model=list[AlertOut])
def member_alerts(
    gov: Gov,
    ticket: Annotated[
        Ticket,
        Guard("members/:member/alerts", "read", action="alerts.read", purpose="coaching"),
    ],
    member: str,
    status: Literal["open", "all"] = "open",
) -> list[Any]:
    """The member's alerts (open, or all), newest first, each with why it fired: the
    rule and its version, the observations behind it, the member's baseline."""
    ticket.params = {"status": status}
    target, seen = _categories(gov, ticket, member)
    with gov.query_pool.connection() as conn:
        found = al.for_member(conn, target, seen, status)
    ticket.row_count = len(found)
    return [a.to_json() for a in found]


def _act(gov: Gov, ticket: Ticket, alert: str, action: al.Action, body: AlertAction) -> Any:
    ticket.params = {"alert": alert, "note": body.note is not None}
    try:
        alert_id = uuid.UUID(alert)
    except ValueError:
        raise NotFound("no such alert") from None
    with gov.query_pool.connection() as conn:
        about = al.member_of(conn, alert_id)
        seen = None if about is None else visible_categories(conn, ticket.viewer, about[0])
    rule = BY_ID.get(about[1]) if about else None
    if about is None or seen is None or rule is None or rule.category not in seen:
        raise NotFound("no such alert")
    with gov.backend_pool.connection() as conn:
        done = al.act(conn, alert_id, action, body.note, ticket.viewer.user)
    if done is None:
        raise NotFound("no such alert")
    ticket.row_count = 1
    return done.to_json()


@router.post("/alerts/{alert}/acknowledge", response_model=AlertOut)
def acknowledge_alert(
    gov: Gov,
    ticket: Annotated[
        Ticket,
        Guard(
            "alerts/:alert/acknowledge", "write", action="alerts.acknowledge", purpose="coaching"
        ),
    ],
    alert: str,
    body: AlertAction,
) -> Any:
    """Mark an alert of one of your members as seen (with an optional note); audited."""
    return _act(gov, ticket, alert, "acknowledge", body)


@router.post("/alerts/{alert}/dismiss", response_model=AlertOut)
def dismiss_alert(
    gov: Gov,
    ticket: Annotated[
        Ticket,
        Guard("alerts/:alert/dismiss", "write", action="alerts.dismiss", purpose="coaching"),
    ],
    alert: str,
    body: AlertAction,
) -> Any:
    """Dismiss an alert of one of your members (a false alarm, already handled); audited."""
    return _act(gov, ticket, alert, "dismiss", body)


@router.get("/members/{member}/labs", response_model=list[LabOut])
def member_labs(
    gov: Gov,
    ticket: Annotated[
        Ticket, Guard("members/:member/labs", "read", action="labs.read", purpose="coaching")
    ],
    member: str,
) -> list[Any]:
    """Lab results of the last two years, newest first (`latest` marks the newest of each
    code), with the reference range of the lab catalogue and whether the value is outside."""
    target, _ = _categories(gov, ticket, member)
    with gov.query_pool.connection() as conn:
        found = labs.results(conn, ticket.viewer, target)
    ticket.row_count = len(found)
    return [r.to_json() for r in found]


@router.get("/members/{member}/daily", response_model=list[DailyRow])
def member_daily(
    gov: Gov,
    ticket: Annotated[
        Ticket, Guard("members/:member/daily", "read", action="daily.read", purpose="coaching")
    ],
    member: str,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> list[DailyRow]:
    """The member's daily summaries (analytics.member_daily) of the last `days` days, oldest
    first; a measure the member does not share with you for coaching is null."""
    ticket.params = {"days": days}
    target, seen = _categories(gov, ticket, member)
    today = dt.datetime.now(dt.UTC).date()
    since = today - dt.timedelta(days=days - 1)
    with gov.query_pool.connection() as conn:
        rows = conn.execute(
            tr.MEMBER_DAILY,
            (target, since, today),
        ).fetchall()
        conn.rollback()
    ticket.row_count = len(rows)
    out = []
    for day, *values in rows:
        shown = {
            m: v
            for m, v in zip(tr.DAILY_METRICS, values, strict=True)
            if tr.METRIC_CATEGORY[m] in seen
        }
        if any(v is not None for v in shown.values()):
            # A day with nothing the viewer may see is not shown: not even that it exists.
            out.append(DailyRow(day=day, **shown))
    return out
