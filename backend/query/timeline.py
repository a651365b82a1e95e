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

Bucket = Literal["hour", "day", "week", "month"]

# Where each bucket width is read from when the range allows it, and the range's
# alignment that allows it: a rollup bucket is whole, so a range starting or ending inside
# one would count rows outside it. Weeks and months merge the daily rollups (weeks start on
# Monday, months on the 1st, UTC, as `time_bucket` does).
_WIDTH = {"hour": "1 hour", "day": "1 day", "week": "1 week", "month": "1 month"}
_ROLLUP = {
    "hour": "rollup_hourly",
    "day": "rollup_daily",
    "week": "rollup_daily",
    "month": "rollup_daily",
}
_ALIGN = {
    "hour": dt.timedelta(hours=1),
    "day": dt.timedelta(days=1),
    "week": dt.timedelta(days=1),
    "month": dt.timedelta(days=1),
}


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
    statement = timeline_sql(bucket, from_rollups(bucket, window["start"], window["end"]))
    rows = conn.execute(statement, _timeline_params(viewer, member, window)).fetchall()
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
        points = conn.execute(
            timeline_sql(bucket, from_rollups(bucket, window["start"], window["end"])),
            _timeline_params(viewer, member, window),
        )
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


def from_rollups(bucket: Bucket | None, start: dt.datetime, end: dt.datetime) -> bool:
    """Whether [start, end) in `bucket`s can be read from the analytics zone's rollups:
    any bucket but the finest zoom (raw rows), with both ends on the rollup's boundaries."""
    if bucket is None:
        return False
    step = _ALIGN[bucket]
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    return all((t - epoch) % step == dt.timedelta(0) for t in (start, end))


def timeline_sql(bucket: Bucket | None, rollups: bool = False) -> sql.Composed:
    """The timeline statement (parameters as `timeline` fills them): raw observations, or
    buckets aggregated from them, or (`rollups`) buckets read from the analytics zone."""
    if bucket is not None and rollups:
        return _rollup_sql(bucket)
    where = sql.SQL(
        "{} and o.observed_at >= %(start)s and o.observed_at < %(end)s"
        " and (%(want)s::text[] is null or o.code = any(%(want)s))"
        " and o.value is not null"  # a timeline plots numbers; coded results: the labs page
        " and (%(after)s::timestamptz is null"
        " or (o.observed_at, o.code) > (%(after)s::timestamptz, %(after_code)s::text))"
    ).format(row_rules.member_observations("o"))
    if bucket is None:
        return sql.SQL(
            "select o.observed_at, o.code, o.value, o.unit from processed.observations o"
            " where {} order by o.observed_at, o.code limit %(limit)s"
        ).format(where)
    return sql.SQL(
        "select time_bucket({}::interval, o.observed_at) as t, o.code, avg(o.value), o.unit,"
        " count(*), min(o.value), max(o.value) from processed.observations o where {}"
        " group by t, o.code, o.unit order by t, o.code limit %(limit)s"
    ).format(sql.Literal(_WIDTH[bucket]), where)


def _rollup_sql(bucket: Bucket) -> sql.Composed:
    """Buckets merged from rollup rows, under the same row rules as the observations (a
    rollup row has the member and the code the rules look at)."""
    where = sql.SQL(
        "{} and r.bucket >= %(start)s and r.bucket < %(end)s"
        " and (%(want)s::text[] is null or r.code = any(%(want)s))"
    ).format(row_rules.member_observations("r"))
    cursor = sql.SQL(
        "where (%(after)s::timestamptz is null"
        " or (t, code) > (%(after)s::timestamptz, %(after_code)s::text))"
    )
    return sql.SQL(
        "select * from ("
        " select time_bucket({width}::interval, r.bucket) as t, r.code,"
        " sum(r.sum) / sum(r.n) as mean, r.unit, sum(r.n) as n, min(r.min), max(r.max)"
        " from analytics.{table} r where {where} group by t, r.code, r.unit"
        ") b {cursor} order by t, code limit %(limit)s"
    ).format(
        width=sql.Literal(_WIDTH[bucket]),
        table=sql.Identifier(_ROLLUP[bucket]),
        where=where,
        cursor=cursor,
    )
