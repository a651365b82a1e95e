"""Cohort statistics for researchers: a cohort defined by criteria over observations and
demographics, one measure summarised by period (and optionally sex or age band), under
disclosure control (small cells, complements, and the differencing guard kept in the
database).

The study and consent rules are in the SQL (`row_rules`, as for datasets); the disclosure rules are
applied to the result before anything leaves this module.

Statistics that merge exactly from partial aggregates (mean, sd, min, max) over whole UTC
days are read from the analytics zone's daily rollups: one row per member, code and day
instead of one per observation. Anything else (a median, a percentile, a window that
starts or ends inside a day) reads the observations. Both give the same answer; the
rollups lag refinement by about a second (docs/analytics.md)."""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import psycopg
from psycopg import sql

from backend.governance import disclosure
from backend.governance.footprints import DbFootprintStore, scope_lock
from backend.governance.members import age_band
from backend.keys.study_keys import pseudonym
from backend.query import row_rules
from backend.query.timeline import from_rollups
from backend.query.viewer import Viewer

Period = Literal["day", "week", "month"]
# Weeks start on Monday (ISO): a period ending on Sunday.
_FREQ = {"day": "D", "week": "W-SUN", "month": "M"}
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Criterion:
    """Members whose mean of `code` over the window satisfies `op value`."""

    code: str
    op: Literal[">=", ">", "<=", "<"]
    value: float


@dataclass(frozen=True)
class Demographics:
    """Members of these sexes (None: any) whose age in the year the window starts is in
    [age_min, age_max] (None: no bound). A member without the demographic a criterion
    needs is left out."""

    sexes: frozenset[str] | None = None
    age_min: int | None = None
    age_max: int | None = None

    def wants_age(self) -> bool:
        return self.age_min is not None or self.age_max is not None


# Dimensions a cohort may be broken down by, besides the period.
By = Literal["sex", "age_band"]


_ROWS = sql.SQL(
    "select o.member_id, o.observed_at, o.code, o.value {} and o.code = any(%(want)s)"
    " and o.value is not null"  # statistics are numeric: coded results (0015) are left out
).format(row_rules.study_observations("o"))
_ROLLUPS = sql.SQL(
    "select r.member_id, r.bucket, r.code, r.n, r.sum, r.sumsq, r.min, r.max {}"
    " and r.code = any(%(want)s)"
).format(row_rules.study_daily_rollups("r"))
FROM_ROLLUPS_NOTE = "computed from the daily rollups (whole UTC days)"


def reads_rollups(start: dt.datetime, end: dt.datetime, stats: Sequence[str]) -> bool:
    """Whether this question can be answered from the daily rollups: whole UTC days (the
    timeline's rule for a daily bucket), and only statistics that merge exactly from
    their partial aggregates."""
    return set(stats) <= disclosure.PARTIAL_STATS and from_rollups("day", start, end)


def cohort_stats(
    qconn: psycopg.Connection,
    bconn: psycopg.Connection,
    viewer: Viewer,
    study: str,
    study_key: bytes,
    *,
    code: str,
    start: dt.datetime,
    end: dt.datetime,
    period: Period = "week",
    criteria: Sequence[Criterion] = (),
    demographics: Demographics | None = None,
    by: Sequence[By] = (),
    stats: Sequence[str] = ("mean", "median"),
    policy: disclosure.DisclosurePolicy | None = None,
) -> disclosure.ProtectedTable:
    policy = policy or disclosure.DisclosurePolicy()
    want = sorted({code, *(c.code for c in criteria)})
    partials = reads_rollups(start, end, stats)
    values = disclosure.PARTS if partials else ["value"]
    rows = qconn.execute(
        _ROLLUPS if partials else _ROWS,
        {**row_rules.params(viewer, study=study), "start": start, "end": end, "want": want},
    ).fetchall()
    qconn.rollback()
    frame = pd.DataFrame(rows, columns=["member", "time", "code", *values])
    frame[values] = frame[values].astype(float)
    members = set(frame["member"])
    for c in criteria:
        means = _member_means(frame[frame["code"] == c.code], partials)
        test = _OPS[c.op]
        members &= {m for m, v in means.items() if test(float(v), c.value)}
    people = _demographics(qconn, members, start.date())
    if demographics is not None:
        members = {m for m in members if _admits(demographics, people.get(m, _UNKNOWN))}
    data = frame[(frame["code"] == code) & frame["member"].isin(members)].copy()
    for dim in by:
        data[dim] = [getattr(people.get(m, _UNKNOWN), dim) for m in data["member"]]
    names = {m: pseudonym(study_key, m) for m in set(data["member"])}
    data["pseudonym"] = data["member"].map(names)
    data["period"] = (
        pd.to_datetime(data["time"], utc=True)
        .dt.tz_localize(None)
        .dt.to_period(_FREQ[period])
        .dt.start_time.dt.strftime("%Y-%m-%d")
    )
    # The guard's check and record for this researcher and study happen under one lock,
    # in one transaction: concurrent answers cannot both slip past it.
    with bconn.transaction():
        scope_lock(bconn, viewer.user, study)
        guard = disclosure.DifferencingGuard(DbFootprintStore(bconn), k=policy.k, key=study_key)
        table = disclosure.aggregate(
            data[["pseudonym", "period", *by, *values]],
            member_col="pseudonym",
            dims=["period", *by],
            value_col=None if partials else "value",
            stats=stats,
            policy=policy,
            guard=guard,
            researcher=viewer.user,
            study=study,
            partials=partials,
        )
    if partials:
        table.notes.append(FROM_ROLLUPS_NOTE)
    return table


def _member_means(frame: pd.DataFrame, partials: bool) -> pd.Series:
    """Each member's mean of the rows (observations, or rollups' partial aggregates)."""
    if not partials:
        return frame.groupby("member")["value"].mean()
    sums = frame.groupby("member")[["sum", "n"]].sum()
    return sums["sum"] / sums["n"]


@dataclass(frozen=True)
class _Person:
    sex: str = "unknown"
    age_band: str = "unknown"
    age: int | None = None


_UNKNOWN = _Person()


def _demographics(
    qconn: psycopg.Connection, members: set[object], on: dt.date
) -> dict[object, _Person]:
    """Sex, age and age band of the members already admitted by the study and consent
    rules; nobody else's are read."""
    if not members:
        return {}
    rows = qconn.execute(
        "select member_id, birth_year, sex from governance.members where member_id = any(%s)",
        (list(members),),
    ).fetchall()
    qconn.rollback()
    return {
        m: _Person(sex or "unknown", age_band(year, on), None if year is None else on.year - year)
        for m, year, sex in rows
    }


def _admits(d: Demographics, person: _Person) -> bool:
    if d.sexes is not None and person.sex not in d.sexes:
        return False
    if d.wants_age():
        if person.age is None:
            return False
        if d.age_min is not None and person.age < d.age_min:
            return False
        if d.age_max is not None and person.age > d.age_max:
            return False
    return True
