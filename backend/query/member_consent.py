"""A member's consent as a person may see it: the member all of it, an assigned coach the
coaching purpose only (which studies a member joined is not a coach's business). The rule
is in the SQL, so a route that forgot to ask `can_view` would still get nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import psycopg
from psycopg import sql

from backend.query.viewer import Viewer

# Which events of %(member)s the viewer may see; `e` is governance.consent_events or the
# consent_effective view (both have member_id and purpose).
_MAY_SEE = sql.SQL("""
(
  (%(as_member)s and exists (
      select 1 from governance.members m
       where m.member_id = e.member_id and m.hub_user = %(viewer)s))
  or
  (%(as_coach)s and e.purpose = 'coaching' and exists (
      select 1 from governance.coach_assignments a
       where a.coach = %(viewer)s and a.member_id = e.member_id and a.revoked_at is null))
)
""")


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
    params = {
        "member": member,
        "viewer": viewer.user,
        "as_member": viewer.has("member"),
        "as_coach": viewer.has("coach"),
        "limit": history_limit,
    }
    effective = conn.execute(
        sql.SQL(
            "select e.purpose, e.category, e.granted, e.consent_version, e.recorded_at"
            " from governance.consent_effective e"
            " where e.member_id = %(member)s and {} order by e.purpose, e.category"
        ).format(_MAY_SEE),
        params,
    ).fetchall()
    history = conn.execute(
        sql.SQL(
            "select e.purpose, e.category, e.action, e.consent_version, e.recorded_at,"
            " coalesce(e.recorded_by = m.hub_user, false)"
            " from governance.consent_events e"
            " left join governance.members m on m.member_id = e.member_id"
            " where e.member_id = %(member)s and {}"
            " order by e.recorded_at desc, e.event_id desc limit %(limit)s"
        ).format(_MAY_SEE),
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
