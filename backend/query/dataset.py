"""Study datasets for researchers: consenting members only, per-study pseudonyms, never a
direct identifier (nor the source name, which can carry one: "Anna's iPhone").

The study check and the consent join are in the SQL (`row_rules.study_observations`): a
researcher not on the study, or a closed study, gets no rows whatever the route did."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

import pandas as pd
import psycopg
from psycopg import sql

from backend.keys.study_keys import pseudonym
from backend.query import row_rules
from backend.query.viewer import Viewer

Shape = Literal["long", "wide"]
# The long shape's columns: a number (value, unit) or a coded / yes-no result.
COLUMNS = [
    "pseudonym",
    "time",
    "code",
    "value",
    "unit",
    "value_code",
    "value_system",
    "value_display",
    "value_boolean",
]

# Results that are not numbers go out as their concept (system, code and its display) or
# yes/no. Free text does not: a text result is whatever a lab typed, possibly a name, and
# the extract must never carry a direct identifier.
_QUERY = sql.SQL(
    "select o.member_id, o.observed_at, o.code, o.value, o.unit, o.value_code,"
    " o.value_system, case when o.value_code is not null then o.value_text end,"
    " o.value_boolean {}"
    "   and (%(want)s::text[] is null or o.code = any(%(want)s))"
    " order by o.member_id, o.observed_at, o.code limit %(limit)s"
).format(row_rules.study_observations("o"))


def on_study(conn: psycopg.Connection, viewer: Viewer, study: str) -> bool:
    row = conn.execute(
        sql.SQL("select {}").format(row_rules.ON_OPEN_STUDY),
        row_rules.params(viewer, study=study),
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
    """Long: one row per observation (`COLUMNS`). Wide: one row per pseudonym and day
    (`bucket`), one column per code (the mean of its numbers in that bucket)."""
    rows = conn.execute(
        _QUERY,
        {
            **row_rules.params(viewer, study=study),
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
    frame = pd.DataFrame([(names[m], *rest) for m, *rest in rows], columns=COLUMNS)
    if shape == "long" or frame.empty:
        return frame
    frame["time"] = pd.to_datetime(frame["time"], utc=True).dt.floor(bucket)
    wide = frame.pivot_table(
        index=["pseudonym", "time"], columns="code", values="value", aggfunc="mean"
    )
    wide.columns.name = None
    return wide.reset_index()
