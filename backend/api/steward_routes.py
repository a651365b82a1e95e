"""The data steward's views over HTTP: quarantined records and data-quality metrics.

What a steward sees of a quarantined record is what fixing data quality needs, not who it
is about: the reason, the field at fault, where it came from (batch, locator in the source
file) and the normalised sample fields (code, value, unit, times). Withheld: the device
or app name (`source`, often a person's name), the
member id (it links to a person's account) and every other field of the raw record (a
rejected CSV row carries whatever the lab put in it: patient numbers, names, birth dates);
their names are listed so the steward knows what exists. The full record stays with the
operators, on the host (`rejuve quarantine show`), where a correction is released anyway."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import AwareDatetime, BaseModel, Field

from backend.api.governed import GOVERNED_RESPONSES, Gov, Guard, Ticket
from backend.refine import quality as ql
from backend.refine import quarantine as qr

router = APIRouter(prefix="/v1", tags=["steward"], responses=GOVERNED_RESPONSES)

# The fields of `normalise.sample_record`: measurement data, nothing that names a person.
# Not `source`: a device name is often a person's ("Anna Smith's iPhone"), and the
# dataset route removes it too.
SHOWN_FIELDS = ("code", "value", "unit", "start", "end", "qualifier", "tz_offset_minutes")


class QuarantinedRecord(BaseModel):
    quarantine_id: uuid.UUID
    batch_id: uuid.UUID | None
    reason: str
    field: str | None
    detail: str | None
    locator: str | None = Field(description="where in the source file (file name and line)")
    status: Literal["open", "released", "rejected"]
    quarantined_at: dt.datetime
    has_member: bool = Field(description="the record is tied to a member (it can be released)")
    record: dict[str, Any] = Field(description=f"the sample fields among {', '.join(SHOWN_FIELDS)}")
    withheld: list[str] = Field(description="names of the record's other fields, values withheld")


class QuarantinePage(BaseModel):
    records: list[QuarantinedRecord]
    next_after: str | None = Field(
        None, description="pass as `after` for the next page (time|id of the last record)"
    )


def _shown(e: qr.Entry) -> QuarantinedRecord:
    record = e.record if isinstance(e.record, dict) else {}
    return QuarantinedRecord.model_validate(
        {
            **{k: getattr(e, k) for k in ("quarantine_id", "batch_id", "reason", "field")},
            **{k: getattr(e, k) for k in ("detail", "locator", "status", "quarantined_at")},
            "has_member": e.member_id is not None,
            "record": {k: record[k] for k in SHOWN_FIELDS if k in record},
            "withheld": sorted(str(k) for k in record if k not in SHOWN_FIELDS),
        }
    )


@router.get("/quarantine", response_model=QuarantinePage)
def quarantine_list(
    gov: Gov,
    ticket: Annotated[Ticket, Guard("quarantine", "read", action="quarantine.list")],
    status: Literal["open", "released", "rejected", "all"] = "open",
    reason: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_]+$")] = None,
    batch: uuid.UUID | None = None,
    since: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[
        str | None, Query(max_length=120, pattern=r"^[^|]+\|[0-9a-fA-F-]{36}$")
    ] = None,
) -> QuarantinePage:
    """Quarantined records, newest first, by status, reason, batch and time."""
    ticket.params = {
        "status": status,
        "reason": reason,
        "batch": str(batch) if batch else None,
        "since": since.isoformat() if since else None,
        "limit": limit,
        "after": after,
    }
    cursor = _cursor(after) if after else None
    with gov.query_pool.connection() as conn:
        entries = qr.list_entries(
            conn,
            status=None if status == "all" else status,
            batch=batch,
            reason=reason,
            since=since,
            after=cursor,
            limit=limit,
        )
        conn.rollback()
    ticket.row_count = len(entries)
    last = entries[-1] if len(entries) == limit else None
    return QuarantinePage(
        records=[_shown(e) for e in entries],
        next_after=f"{last.quarantined_at.isoformat()}|{last.quarantine_id}" if last else None,
    )


def _cursor(after: str) -> tuple[dt.datetime, uuid.UUID]:
    at, _, qid = after.partition("|")
    try:
        when = dt.datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("no time zone")
        return when, uuid.UUID(qid)
    except ValueError:
        raise HTTPException(
            422,
            [{"loc": ["query", "after"], "type": "value_error", "msg": "not a `next_after`"}],
        ) from None


@router.get("/quarantine/{quarantine_id}", response_model=QuarantinedRecord)
def quarantine_show(
    gov: Gov,
    ticket: Annotated[Ticket, Guard("quarantine", "read", action="quarantine.show")],
    quarantine_id: uuid.UUID,
) -> QuarantinedRecord:
    """One quarantined record (the same view as in the listing)."""
    ticket.params = {"quarantine_id": str(quarantine_id)}
    with gov.query_pool.connection() as conn:
        try:
            entry = qr.get(conn, quarantine_id)  # NotFound: 404
        finally:
            conn.rollback()
    ticket.row_count = 1
    return _shown(entry)


@router.get("/quality", response_model=list[ql.BatchQuality])
def quality(
    gov: Gov,
    ticket: Annotated[Ticket, Guard("quality", "read", action="quality.read")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    since: AwareDatetime | None = None,
    format: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z-]+$")] = None,
) -> list[ql.BatchQuality]:
    """Data-quality metrics per batch, newest first: what `rejuve quality` shows."""
    ticket.params = {
        "limit": limit,
        "since": since.isoformat() if since else None,
        "format": format,
    }
    with gov.query_pool.connection() as conn:
        rows = ql.latest(conn, limit=limit, since=since, fmt=format)
    ticket.row_count = len(rows)
    return rows


class Rejection(BaseModel):
    note: Annotated[str, Field(min_length=1, max_length=500, description="why, for the record")]


@router.post(
    "/quarantine/{quarantine_id}/reject",
    response_model=QuarantinedRecord,
    responses={409: {"description": "already released or rejected"}},
)
def quarantine_reject(
    gov: Gov,
    ticket: Annotated[Ticket, Guard("quarantine", "write", action="quarantine.reject")],
    quarantine_id: uuid.UUID,
    body: Rejection,
) -> QuarantinedRecord:
    """Reject a quarantined record for good (it stays, marked rejected, with the note).
    Releasing a corrected record is done on the host (`rejuve quarantine release`)."""
    ticket.params = {"quarantine_id": str(quarantine_id), "note": body.note}
    with gov.backend_pool.connection() as conn:
        try:
            qr.get(conn, quarantine_id)  # NotFound: 404
        finally:
            # reject's own transaction must be the outer one, or it would not commit
            conn.rollback()
        qr.reject(conn, quarantine_id, body.note)  # Conflict (already resolved): 409
        entry = qr.get(conn, quarantine_id)
        conn.rollback()
    ticket.row_count = 1
    return _shown(entry)
