"""Putting test data in place the way the platform's writers would: observations, studies
and consent. Shared by the query, API and notebook tests."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterable, Sequence

import psycopg

from backend.analytics import rollups
from backend.governance import consent
from backend.runtime import Runtime

Row = tuple[uuid.UUID, dt.datetime, str, float, str]  # member, time, code, value, unit


def observations(
    conn: psycopg.Connection, rows: Iterable[Row], source: str = "t", *, queue: bool = True
) -> None:
    """Observations in, with their rollup keys queued in the same transaction (as the
    refiner does); the stack's `rollups` service, or `rolled_up`, builds the rollups.
    `queue=False` leaves the analytics zone alone (a test that writes its summaries
    itself)."""
    rows = list(rows)
    with conn.cursor() as cur:
        cur.executemany(
            "insert into processed.observations (member_id, observed_at, code, value, unit,"
            " source, raw_record_id, raw_received_at) values (%s, %s, %s, %s, %s, %s,"
            " gen_random_uuid(), now())",
            [(*r, source) for r in rows],
        )
        if not queue:
            return
        cur.executemany(
            "insert into analytics.rollup_dirty (member_id, code, hour, cause)"
            " values (%s, %s, time_bucket('1 hour', %s::timestamptz), 'refine')",
            sorted({(r[0], r[2], r[1].replace(minute=0, second=0, microsecond=0)) for r in rows}),
        )


def rolled_up(conn: psycopg.Connection) -> None:
    """Build the rollups of a scratch database (no `rollups` service runs there)."""
    conn.commit()
    rollups.refresh_all(conn)


def daily_rollups(conn: psycopg.Connection, members: Sequence[uuid.UUID]) -> None:
    """The daily rollups of these members' observations, written as the rollups service
    would (for fixtures that write their own member-day summaries and so queue no keys)."""
    conn.execute(
        "insert into analytics.rollup_daily (member_id, code, bucket, n, sum, sumsq, min, max,"
        " last, last_at, minutes, unit)"
        " select member_id, code, time_bucket('1 day', observed_at), count(*), sum(value),"
        " sum(value * value), min(value), max(value),"
        " (array_agg(value order by observed_at desc, value desc))[1], max(observed_at),"
        " count(distinct date_trunc('minute', observed_at)), min(unit)"
        " from processed.observations where member_id = any(%s) group by 1, 2, 3",
        (list(members),),
    )


def wait_rolled_up(ctx: Runtime, members: Iterable[uuid.UUID], timeout: float = 30) -> None:
    """Until the stack's `rollups` service has taken every queued key of these members."""
    wanted = list(members)
    deadline = time.monotonic() + timeout
    with ctx.db.connect("query", autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "select count(*) from analytics.rollup_dirty where member_id = any(%s)",
                (wanted,),
            ).fetchone()
            if row and row[0] == 0:
                return
            time.sleep(0.1)
    raise AssertionError(f"rollups of {len(wanted)} member(s) not built within {timeout} s")


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
