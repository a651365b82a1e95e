"""A member's consent as a person may see it: the member all of it, an assigned coach the
coaching purpose only. The rule is `row_rules.member_consent_events`, in the SQL, so a
route that forgot to ask `can_view` would still get nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import psycopg
from psycopg import sql

from backend.query import row_rules
from backend.query.viewer import Viewer


@dataclass(frozen=True)
class Effective:
    purpose: str
    category: str
    granted: bool
    consent_version: str
    recorded_at: dt.datetime


@dataclass(frozen=True)
class Event:
    purpose: str
    category: str
    action: str
    consent_version: str
    recorded_at: dt.datetime
    by_member: bool  # recorded by the member's own account, not on their behalf


def for_viewer(
    conn: psycopg.Connection, viewer: Viewer, member: uuid.UUID, history_limit: int = 1000
) -> tuple[list[Effective], list[Event]]:
    params = {**row_rules.params(viewer, member=member), "limit": history_limit}
    effective = conn.execute(
        sql.SQL(
            "select e.purpose, e.category, e.granted, e.consent_version, e.recorded_at"
            " from governance.consent_effective e"
            " where {} order by e.purpose, e.category"
        ).format(row_rules.member_consent_events("e")),
        params,
    ).fetchall()
    history = conn.execute(
        sql.SQL(
            "select e.purpose, e.category, e.action, e.consent_version, e.recorded_at,"
            " coalesce(e.recorded_by = m.hub_user, false)"
            " from governance.consent_events e"
            " left join governance.members m on m.member_id = e.member_id"
            " where {}"
            " order by e.recorded_at desc, e.event_id desc limit %(limit)s"
        ).format(row_rules.member_consent_events("e")),
        params,
    ).fetchall()
    conn.rollback()
    return [Effective(*r) for r in effective], [Event(*r) for r in history]


def study_state(conn: psycopg.Connection, study: str) -> str | None:
    """'open', 'closed', or None for no such study."""
    row = conn.execute(
        "select closed_at is null from governance.studies where study_id = %s", (study,)
    ).fetchone()
    conn.rollback()
    if row is None:
        return None
    return "open" if row[0] else "closed"
