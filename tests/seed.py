"""Putting test data in place the way the platform's writers would: observations, studies
and consent. Shared by the query, API and notebook tests."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence

import psycopg

from backend.governance import consent

Row = tuple[uuid.UUID, dt.datetime, str, float, str]  # member, time, code, value, unit


def observations(conn: psycopg.Connection, rows: Iterable[Row], source: str = "t") -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "insert into processed.observations (member_id, observed_at, code, value, unit,"
            " source, raw_record_id, raw_received_at) values (%s, %s, %s, %s, %s, %s,"
            " gen_random_uuid(), now())",
            [(*r, source) for r in rows],
        )


def study(
    conn: psycopg.Connection,
    study_id: str,
    researchers: Sequence[str],
    access_level: str = "row-level",
) -> None:
    """A study as tests use it: row-level unless told (new studies default to aggregate)."""
    conn.execute(
        "insert into governance.studies (study_id, title, created_by, access_level)"
        " values (%s, %s, 'admin', %s)",
        (study_id, study_id, access_level),
    )
    for r in researchers:
        conn.execute("insert into governance.study_researchers values (%s, %s)", (study_id, r))


def consent_all(
    conn: psycopg.Connection,
    members: Iterable[uuid.UUID],
    purpose: str,
    categories: Sequence[str] = ("wearables", "labs"),
) -> None:
    consent.grant_all(conn, members, purpose, categories, consent_version="v1", recorded_by="test")
