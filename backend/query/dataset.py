"""Study datasets for researchers: consenting members only, per-study pseudonyms, never a
direct identifier (nor the source name, which can carry one: "Anna's iPhone").

The study check and the consent join are in the SQL: a researcher not on the study, or a
closed study, gets no rows whatever the route did."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

import pandas as pd
import psycopg
from psycopg import sql

from backend.governance.consent import code_categories, study_purpose
from backend.keys.study_keys import pseudonym
from backend.query.study_scope import STUDY_OBSERVATIONS
from backend.query.viewer import Viewer

Shape = Literal["long", "wide"]

_QUERY = sql.SQL(
    "select o.member_id, o.observed_at, o.code, o.value, o.unit {}"
    "   and (%(want)s::text[] is null or o.code = any(%(want)s))"
    " order by o.member_id, o.observed_at, o.code limit %(limit)s"
).format(STUDY_OBSERVATIONS)


def on_study(conn: psycopg.Connection, viewer: Viewer, study: str) -> bool:
    row = conn.execute(
        "select exists (select 1 from governance.study_researchers r"
        " join governance.studies s on s.study_id = r.study_id"
        " where r.study_id = %s and r.researcher = %s and s.closed_at is null)",
        (study, viewer.user),
    ).fetchone()
    conn.rollback()
    return bool(row and row[0])


def extract(
    conn: psycopg.Connection,
    viewer: Viewer,
    study: str,
    study_key: bytes,
    *,
    start: dt.datetime,
    end: dt.datetime,
    codes: list[str] | None = None,
    shape: Shape = "long",
    bucket: str = "1D",
    limit: int = 5_000_000,
) -> pd.DataFrame:
    """Long: one row per observation (pseudonym, time, code, value, unit). Wide: one row
    per pseudonym and day (`bucket`), one column per code (the mean in that bucket)."""
    all_codes, categories = code_categories()
    rows = conn.execute(
        _QUERY,
        {
            "study": study,
            "viewer": viewer.user,
            "purpose": study_purpose(study),
            "codes": all_codes,
            "categories": categories,
            "start": start,
            "end": end,
            "want": codes,
            "limit": limit,
        },
    ).fetchall()
    conn.rollback()
    names: dict[uuid.UUID, str] = {}
    for member, *_ in rows:
        if member not in names:
            names[member] = pseudonym(study_key, member)
    frame = pd.DataFrame(
        [(names[m], t, c, v, u) for m, t, c, v, u in rows],
        columns=["pseudonym", "time", "code", "value", "unit"],
    )
    if shape == "long" or frame.empty:
        return frame
    frame["time"] = pd.to_datetime(frame["time"], utc=True).dt.floor(bucket)
    wide = frame.pivot_table(
        index=["pseudonym", "time"], columns="code", values="value", aggfunc="mean"
    )
    wide.columns.name = None
    return wide.reset_index()
