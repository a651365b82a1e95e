"""Cohort statistics for researchers: a cohort defined by criteria over observations, one
measure summarised by period, under disclosure control (small cells, complements, and the
differencing guard kept in the database).

The study and consent rules are in the SQL (as for datasets); the disclosure rules are
applied to the row-level result before anything leaves this module."""

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
from backend.governance.consent import CONSENTED_CODES, code_categories, study_purpose
from backend.governance.footprints import DbFootprintStore, scope_lock
from backend.keys.study_keys import pseudonym
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


_ROWS = sql.SQL("""
select o.member_id, o.observed_at, o.code, o.value
  from processed.observations o
  join ({consented}) ok on ok.member_id = o.member_id and ok.code = o.code
 where exists (select 1 from governance.study_researchers r
                 join governance.studies s on s.study_id = r.study_id
                where r.study_id = %(study)s and r.researcher = %(viewer)s
                  and s.closed_at is null)
   and o.observed_at >= %(start)s and o.observed_at < %(end)s
   and o.code = any(%(want)s)
""").format(consented=sql.SQL(CONSENTED_CODES))


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
    stats: Sequence[str] = ("mean", "median"),
    policy: disclosure.DisclosurePolicy | None = None,
) -> disclosure.ProtectedTable:
    policy = policy or disclosure.DisclosurePolicy()
    codes, categories = code_categories()
    want = sorted({code, *(c.code for c in criteria)})
    rows = qconn.execute(
        _ROWS,
        {
            "study": study,
            "viewer": viewer.user,
            "purpose": study_purpose(study),
            "codes": codes,
            "categories": categories,
            "start": start,
            "end": end,
            "want": want,
        },
    ).fetchall()
    qconn.rollback()
    frame = pd.DataFrame(rows, columns=["member", "time", "code", "value"])
    frame["value"] = frame["value"].astype(float)
    members = set(frame["member"])
    for c in criteria:
        means = frame[frame["code"] == c.code].groupby("member")["value"].mean()
        test = _OPS[c.op]
        members &= {m for m, v in means.items() if test(float(v), c.value)}
    data = frame[(frame["code"] == code) & frame["member"].isin(members)].copy()
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
        return disclosure.aggregate(
            data[["pseudonym", "period", "value"]],
            member_col="pseudonym",
            dims=["period"],
            value_col="value",
            stats=stats,
            policy=policy,
            guard=guard,
            researcher=viewer.user,
            study=study,
        )
