"""A member's timeline for their coach or for the member: raw observations or time buckets.

Which rows a viewer may see is decided in the SQL, by the rules in `row_rules` (the
member themselves; an assigned coach, the categories the member consents to for
coaching), evaluated once per request. The same rules answer `can_view`, so the route
can refuse (and audit) before querying, and the query would return nothing even if a
route forgot to ask."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg import sql

from backend.query import row_rules
from backend.query.viewer import Viewer

Bucket = Literal["hour", "day"]


@dataclass(frozen=True)
class Point:
    time: dt.datetime
    code: str
    value: float
    unit: str
    count: int = 1
    min: float | None = None
    max: float | None = None


def can_view(conn: psycopg.Connection, viewer: Viewer, member: uuid.UUID) -> bool:
    """Whether the viewer may see anything of this member at all (assignment or self)."""
    row = conn.execute(
        sql.SQL("select {}").format(row_rules.may_see_member()),
        row_rules.params(viewer, member=member),
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
        **row_rules.params(viewer, member=member),
        "start": start,
        "end": end,
        "limit": limit,
        "want": codes,
        "after": after[0] if after else None,
        "after_code": after[1] if after else None,
    }
    rows = conn.execute(timeline_sql(bucket), params).fetchall()
    conn.rollback()
    if bucket is None:
        return [Point(r[0], r[1], r[2], r[3]) for r in rows]
    return [Point(r[0], r[1], float(r[2]), r[3], int(r[4]), r[5], r[6]) for r in rows]


def timeline_sql(bucket: Bucket | None) -> sql.Composed:
    """The timeline statement (parameters as `timeline` fills them)."""
    where = sql.SQL(
        "{} and o.observed_at >= %(start)s and o.observed_at < %(end)s"
        " and (%(want)s::text[] is null or o.code = any(%(want)s))"
        " and (%(after)s::timestamptz is null"
        " or (o.observed_at, o.code) > (%(after)s::timestamptz, %(after_code)s::text))"
    ).format(row_rules.member_observations("o"))
    if bucket is None:
        return sql.SQL(
            "select o.observed_at, o.code, o.value, o.unit from processed.observations o"
            " where {} order by o.observed_at, o.code limit %(limit)s"
        ).format(where)
    width = {"hour": "1 hour", "day": "1 day"}[bucket]
    return sql.SQL(
        "select time_bucket({}::interval, o.observed_at) as t, o.code, avg(o.value), o.unit,"
        " count(*), min(o.value), max(o.value) from processed.observations o where {}"
        " group by t, o.code, o.unit order by t, o.code limit %(limit)s"
    ).format(sql.Literal(width), where)
