"""Consent: an append-only ledger per member x purpose x data category, versioned against
the consent text the member saw. Queries join the effective consent in SQL
(`CONSENTED_CODES`), so a withdrawal counts from the very next request.

Purposes are `coaching` or `study:<study id>`; categories are the catalog's
(`backend.ingest.catalog.Measure.category`)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from backend.exceptions import UserError
from backend.ingest.catalog import CATALOG

CATEGORIES = tuple(sorted({m.category for m in CATALOG.values()}))


def study_purpose(study_id: str) -> str:
    return f"study:{study_id}"


@dataclass(frozen=True)
class Consent:
    purpose: str
    category: str
    granted: bool
    consent_version: str
    recorded_at: dt.datetime


def _check(purpose: str, category: str) -> None:
    if category not in CATEGORIES:
        raise UserError(f"unknown data category '{category}'; known: {', '.join(CATEGORIES)}")
    if purpose != "coaching" and not purpose.startswith("study:"):
        raise UserError(f"unknown purpose '{purpose}': 'coaching' or 'study:<id>'")


def record(
    conn: psycopg.Connection,
    *,
    member: uuid.UUID,
    purpose: str,
    category: str,
    granted: bool,
    consent_version: str,
    recorded_by: str,
    evidence: Mapping[str, Any] | None = None,
) -> uuid.UUID:
    """Append a grant or withdrawal. Never updates: history is the point."""
    _check(purpose, category)
    row = conn.execute(
        "insert into governance.consent_events (member_id, purpose, category, action,"
        " consent_version, recorded_by, evidence) values (%s, %s, %s, %s, %s, %s, %s)"
        " returning event_id",
        (
            member,
            purpose,
            category,
            "grant" if granted else "withdraw",
            consent_version,
            recorded_by,
            Jsonb(dict(evidence or {})),
        ),
    ).fetchone()
    conn.commit()
    assert row is not None
    return uuid.UUID(str(row[0]))


def grant_all(
    conn: psycopg.Connection,
    members: Iterable[uuid.UUID],
    purpose: str,
    categories: Sequence[str],
    *,
    consent_version: str,
    recorded_by: str,
) -> int:
    """Grants for many members at once (an enrolment wave, a study's sign-up list, test and
    benchmark cohorts); returns how many events were appended."""
    n = 0
    for member in members:
        for category in categories:
            record(
                conn,
                member=member,
                purpose=purpose,
                category=category,
                granted=True,
                consent_version=consent_version,
                recorded_by=recorded_by,
            )
            n += 1
    return n


def effective(conn: psycopg.Connection, member: uuid.UUID) -> list[Consent]:
    rows = conn.execute(
        "select purpose, category, granted, consent_version, recorded_at"
        " from governance.consent_effective where member_id = %s order by purpose, category",
        (member,),
    ).fetchall()
    conn.rollback()
    return [Consent(*r) for r in rows]


def code_categories() -> tuple[list[str], list[str]]:
    """Parallel arrays (code, category) for the SQL below."""
    codes = sorted(CATALOG)
    return codes, [CATALOG[c].category for c in codes]


# The observations a purpose may use: join this on (member_id, code). Parameters:
# %(purpose)s, %(codes)s, %(categories)s (from `code_categories`).
CONSENTED_CODES = """
    select c.member_id, cc.code
      from governance.consent_effective c
      join unnest(%(codes)s::text[], %(categories)s::text[]) as cc(code, category)
        on cc.category = c.category
     where c.purpose = %(purpose)s and c.granted
"""
