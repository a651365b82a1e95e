"""The audit trail for auditors: search it, and verify its hash chain. Auditors see the
trail and nothing else (the policy gives the role `audit` only); their own searches are
audited like any other request."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from backend.api.governed import GOVERNED_RESPONSES, Gov, Guard, Ticket
from backend.governance import audit

# Text columns cannot hold NUL: a filter with one is the caller's mistake (422), not a 500.
NO_NUL = r"^[^\x00]*$"

router = APIRouter(prefix="/v1", tags=["audit"], responses=GOVERNED_RESPONSES)


class AuditPage(BaseModel):
    records: list[audit.Record]
    next_before: int | None = Field(None, description="pass as `before` for the next page")


class ChainProblem(BaseModel):
    seq: int
    problem: str


class ChainVerification(BaseModel):
    ok: bool
    checked: int = Field(description="records whose hash was recomputed")
    problems: list[ChainProblem]


@router.get("/audit", response_model=AuditPage)
def audit_search(
    gov: Gov,
    ticket: Annotated[Ticket, Guard("audit", "read", action="audit.search")],
    actor: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.]+$")] = None,
    outcome: Literal["allowed", "denied", "error"] | None = None,
    resource_prefix: Annotated[str | None, Query(max_length=500, pattern=NO_NUL)] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    request_id: uuid.UUID | None = None,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Audit records, newest first, by actor, action, outcome, resource prefix, time range
    ([since, until)) and request id."""
    search = audit.Search(
        actor=actor,
        action=action,
        outcome=outcome,
        resource_prefix=resource_prefix,
        since=since,
        until=until,
        request_id=request_id,
        before=before,
        limit=limit,
    )
    ticket.params = {
        k: v.isoformat()
        if isinstance(v, dt.datetime)
        else str(v)
        if isinstance(v, uuid.UUID)
        else v
        for k, v in search.__dict__.items()
    }
    with gov.backend_pool.connection() as conn:
        records = audit.search(conn, search)
    ticket.row_count = len(records)
    return AuditPage(
        records=records,
        next_before=records[-1].seq if len(records) == limit else None,
    )


@router.get("/audit/verify", response_model=ChainVerification)
def audit_verify(
    gov: Gov, ticket: Annotated[Ticket, Guard("audit", "read", action="audit.verify")]
) -> ChainVerification:
    """Recompute the hash chain; name every edited, deleted or reordered record."""
    with gov.backend_pool.connection() as conn:
        result = audit.verify(conn)
    ticket.row_count = result.checked
    return ChainVerification(
        ok=result.ok,
        checked=result.checked,
        problems=[ChainProblem(seq=s, problem=p) for s, p in result.problems],
    )
