"""Lab results for the coach app: each result with the reference range of a small, documented
catalogue (adult ranges as commonly printed on lab reports; docs/coaching.md lists them
with their sources). A result outside its range is flagged `low` or `high`; a code the
catalogue does not know gets no range and no flag (null), never a guess.

The ranges are for coaching conversations, not diagnosis: one range per analyte, not
per sex, age or laboratory method."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

from backend.ingest.catalog import CATALOG
from backend.query import row_rules
from backend.query.viewer import Viewer


@dataclass(frozen=True)
class Reference:
    low: float | None
    high: float | None
    note: str


# Canonical units of the ingest catalogue (backend/ingest/catalog.py).
REFERENCE: dict[str, Reference] = {
    "2339-0": Reference(70, 99, "fasting glucose, mg/dL (ADA: 100-125 prediabetes)"),
    "4548-4": Reference(4.0, 5.6, "HbA1c, % (ADA: 5.7-6.4 prediabetes, >= 6.5 diabetes)"),
    "2093-3": Reference(None, 199, "total cholesterol, mg/dL (NCEP ATP III desirable < 200)"),
    "2085-9": Reference(40, None, "HDL cholesterol, mg/dL (NCEP ATP III low < 40)"),
    "13457-7": Reference(None, 129, "LDL cholesterol, mg/dL (NCEP ATP III >= 130 borderline)"),
    "2571-8": Reference(None, 149, "triglycerides, mg/dL (NCEP ATP III >= 150 borderline)"),
    "2160-0": Reference(0.6, 1.3, "creatinine, mg/dL (typical adult range)"),
    "1988-5": Reference(None, 5.0, "C-reactive protein, mg/L (typical upper limit)"),
    "718-7": Reference(12.0, 17.5, "hemoglobin, g/dL (adult, either sex)"),
}

# Numeric lab codes (flags, triage, alerts compare numbers) and every lab code the labs
# page lists (coded results too: a SARS-CoV-2 PCR "Detected").
LAB_CODES: tuple[str, ...] = tuple(
    sorted(c for c, m in CATALOG.items() if m.category == "labs" and m.value_type == "quantity")
)
RESULT_CODES: tuple[str, ...] = tuple(sorted(c for c, m in CATALOG.items() if m.category == "labs"))
# How far back the labs page and the lab flags look.
HISTORY = dt.timedelta(days=730)
MAX_RESULTS = 500

Status = Literal["low", "high", "normal"]


def flag(code: str, value: float | None) -> Status | None:
    ref = REFERENCE.get(code)
    if ref is None or value is None:
        return None
    if ref.low is not None and value < ref.low:
        return "low"
    if ref.high is not None and value > ref.high:
        return "high"
    return "normal"


@dataclass(frozen=True)
class LabResult:
    code: str
    value: float | None  # None for a coded result
    unit: str
    at: dt.datetime
    latest: bool  # the newest result of its code
    value_code: str | None = None  # a coded result: the concept (e.g. SNOMED 260373001)
    value_system: str | None = None
    value_text: str | None = None  # its display ("Detected"), or a text result
    value_boolean: bool | None = None

    def to_json(self) -> dict[str, Any]:
        ref = REFERENCE.get(self.code)
        measure = CATALOG.get(self.code)
        return {
            "code": self.code,
            "name": measure.name if measure else self.code,
            "value": self.value,
            "unit": self.unit,
            "at": self.at.isoformat(),
            "ref_low": ref.low if ref else None,
            "ref_high": ref.high if ref else None,
            "flag": flag(self.code, self.value),
            "latest": self.latest,
            "value_code": self.value_code,
            "value_system": self.value_system,
            "value_text": self.value_text,
            "value_boolean": self.value_boolean,
        }


_RESULTS = sql.SQL(
    "select o.code, o.value, o.unit, o.observed_at, o.value_code, o.value_system,"
    " o.value_text, o.value_boolean from processed.observations o"
    " where {visible} and o.code = any(%(labs)s) and o.observed_at >= %(since)s"
    " order by o.observed_at desc, o.code limit %(limit)s"
).format(visible=row_rules.member_observations("o"))


def results(
    conn: psycopg.Connection, viewer: Viewer, member: uuid.UUID, now: dt.datetime | None = None
) -> list[LabResult]:
    """The member's lab results the viewer may see, newest first, each marked whether it
    is the latest of its code."""
    since = (now or dt.datetime.now(dt.UTC)) - HISTORY
    rows = conn.execute(
        _RESULTS,
        {
            **row_rules.params(viewer, member=member),
            "labs": list(RESULT_CODES),
            "since": since,
            "limit": MAX_RESULTS,
        },
    ).fetchall()
    conn.rollback()
    seen: set[str] = set()
    out = []
    for code, value, unit, at, *coded in rows:
        number = None if value is None else float(value)
        out.append(LabResult(code, number, unit, at, code not in seen, *coded))
        seen.add(code)
    return out


# The latest result per lab code of many members at once (the triage list), for members
# whose `labs` category the caller already knows is visible.
LATEST_MANY = """
select distinct on (o.member_id, o.code) o.member_id, o.code, o.value, o.unit, o.observed_at
  from processed.observations o
 where o.member_id = any(%(members)s) and o.code = any(%(labs)s) and o.observed_at >= %(since)s
   and o.value is not null
 order by o.member_id, o.code, o.observed_at desc
"""
