"""A member's timeline for their coach or for the member: raw observations or time buckets.

Object-level rules live in the SQL itself, not only in the route: a coach's query can
only return rows of members assigned to them who consent to coaching for that data
category, and a member's query only their own rows. The same predicate answers
`can_view`, so the route can refuse (and audit) before querying, and the query would
return nothing even if a route forgot to ask."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg import sql

from backend.governance.consent import CONSENTED_CODES, code_categories
from backend.query.viewer import Viewer

Bucket = Literal["hour", "day"]

# True when %(viewer)s may see observation row `o` (member_id, code) for the timeline.
_MAY_SEE = sql.SQL("""
(
  (%(as_member)s and exists (
      select 1 from governance.members m
       where m.member_id = o.member_id and m.hub_user = %(viewer)s))
  or
  (%(as_coach)s and exists (
      select 1 from governance.coach_assignments a
       where a.coach = %(viewer)s and a.member_id = o.member_id and a.revoked_at is null)
   and exists (
      select 1 from ({consented}) ok
       where ok.member_id = o.member_id and ok.code = o.code))
)
""").format(consented=sql.SQL(CONSENTED_CODES))


@dataclass(frozen=True)
class Point:
    time: dt.datetime
    code: str
    value: float
    unit: str
    count: int = 1
    min: float | None = None
    max: float | None = None


def _params(viewer: Viewer, member: uuid.UUID) -> dict[str, object]:
    codes, categories = code_categories()
    return {
        "viewer": viewer.user,
        "member": member,
        "purpose": "coaching",
        "as_member": viewer.has("member"),
        "as_coach": viewer.has("coach"),
        "codes": codes,
        "categories": categories,
    }


def can_view(conn: psycopg.Connection, viewer: Viewer, member: uuid.UUID) -> bool:
    """Whether the viewer may see anything of this member at all (assignment or self)."""
    row = conn.execute(
        """select (%(as_member)s and exists (select 1 from governance.members m
                     where m.member_id = %(member)s and m.hub_user = %(viewer)s))
               or (%(as_coach)s and exists (select 1 from governance.coach_assignments a
                     where a.coach = %(viewer)s and a.member_id = %(member)s
                       and a.revoked_at is null))""",
        _params(viewer, member),
    ).fetchone()
    return bool(row and row[0])


def timeline(
    conn: psycopg.Connection,
    viewer: Viewer,
    member: uuid.UUID,
    *,
    start: dt.datetime,
    end: dt.datetime,
    codes: list[str] | None = None,
    bucket: Bucket | None = None,
    limit: int = 10_000,
    after: tuple[dt.datetime, str] | None = None,
) -> list[Point]:
    """Observations (or hourly/daily buckets) in [start, end), oldest first. `after` (the
    last point's time and code) and `limit` page through long ranges: keyset pagination
    on (time, code), which stays exact when several codes share a timestamp."""
    params = {
        **_params(viewer, member),
        "start": start,
        "end": end,
        "limit": limit,
        "want": codes,
        "after": after[0] if after else None,
        "after_code": after[1] if after else None,
    }
    where = (
        sql.SQL(
            "o.member_id = %(member)s and o.observed_at >= %(start)s and o.observed_at < %(end)s"
            " and (%(want)s::text[] is null or o.code = any(%(want)s))"
            " and (%(after)s::timestamptz is null"
            " or (o.observed_at, o.code) > (%(after)s::timestamptz, %(after_code)s::text)) and "
        )
        + _MAY_SEE
    )
    if bucket is None:
        query = sql.SQL(
            "select o.observed_at, o.code, o.value, o.unit from processed.observations o"
            " where {} order by o.observed_at, o.code limit %(limit)s"
        ).format(where)
        rows = conn.execute(query, params).fetchall()
        conn.rollback()
        return [Point(r[0], r[1], r[2], r[3]) for r in rows]
    width = {"hour": "1 hour", "day": "1 day"}[bucket]
    query = sql.SQL(
        "select time_bucket({}::interval, o.observed_at) as t, o.code, avg(o.value), o.unit,"
        " count(*), min(o.value), max(o.value) from processed.observations o where {}"
        " group by t, o.code, o.unit order by t, o.code limit %(limit)s"
    ).format(sql.Literal(width), where)
    rows = conn.execute(query, params).fetchall()
    conn.rollback()
    return [Point(r[0], r[1], float(r[2]), r[3], int(r[4]), r[5], r[6]) for r in rows]
