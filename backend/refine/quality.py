"""Data-quality metrics per batch (written by the refiner), as the steward reads them: the
`rejuve quality` table and `GET /v1/quality` share this."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class BatchQuality:
    batch_id: uuid.UUID
    format: str
    received_at: dt.datetime
    completeness: float | None  # None: nothing was parsed (no rate to speak of)
    validity_rate: float | None
    duplicate_rate: float | None
    lateness_p50_s: float | None
    lateness_p95_s: float | None
    refine_lag_s: float
    error: str | None = None  # the batch failed: unreadable or dead-lettered, and why


def latest(
    conn: psycopg.Connection,
    *,
    limit: int = 20,
    since: dt.datetime | None = None,
    fmt: str | None = None,
) -> list[BatchQuality]:
    """The most recent batches first."""
    rows = conn.execute(
        "select batch_id, format, received_at, completeness, validity_rate, duplicate_rate,"
        " lateness_p50_s, lateness_p95_s, refine_lag_s, error from analytics.batch_quality"
        " where (%(since)s::timestamptz is null or received_at >= %(since)s)"
        "   and (%(fmt)s::text is null or format = %(fmt)s)"
        " order by received_at desc, batch_id limit %(limit)s",
        {"since": since, "fmt": fmt, "limit": limit},
    ).fetchall()
    conn.rollback()
    return [BatchQuality(*r) for r in rows]
