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
from typing import Any, Literal, Required, TypedDict, Unpack

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


class Window(TypedDict, total=False):
    """What part of a timeline to read: [start, end), optionally some codes, in buckets,
    a page of `limit` points after the keyset cursor `after` (the last point's time and
    code: exact when several codes share a timestamp)."""

    start: Required[dt.datetime]
    end: Required[dt.datetime]
    codes: list[str] | None
    bucket: Bucket | None
    limit: int
    after: tuple[dt.datetime, str] | None


def timeline(
    conn: psycopg.Connection, viewer: Viewer, member: uuid.UUID, **window: Unpack[Window]
) -> list[Point]:
    """Observations (or hourly/daily buckets) in the window, oldest first."""
    bucket = window.get("bucket")
    rows = conn.execute(timeline_sql(bucket), _timeline_params(viewer, member, window)).fetchall()
    conn.rollback()
    return _points(rows, bucket)


def visible_timeline(
    conn: psycopg.Connection, viewer: Viewer, member: uuid.UUID, **window: Unpack[Window]
) -> list[Point] | None:
    """`timeline` for a route: None if the viewer may not see the member at all (`can_view`),
    else the points. Both statements go in one round trip (a pipeline): the visibility
    check used to cost a round trip of its own on every request."""
    bucket = window.get("bucket")
    with conn.pipeline():
        seen = conn.execute(
            sql.SQL("select {}").format(row_rules.may_see_member()),
            row_rules.params(viewer, member=member),
        )
        points = conn.execute(timeline_sql(bucket), _timeline_params(viewer, member, window))
    visible = seen.fetchone()
    rows = points.fetchall()
    conn.rollback()
    if not (visible and visible[0]):
        return None
    return _points(rows, bucket)


def _timeline_params(viewer: Viewer, member: uuid.UUID, window: Window) -> dict[str, object]:
    after = window.get("after")
    return {
        **row_rules.params(viewer, member=member),
        "start": window["start"],
        "end": window["end"],
        "limit": window.get("limit", 10_000),
        "want": window.get("codes"),
        "after": after[0] if after else None,
        "after_code": after[1] if after else None,
    }


def _points(rows: list[tuple[Any, ...]], bucket: Bucket | None) -> list[Point]:
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
