"""Consent over HTTP: a member reads and changes their own consent; an assigned coach reads
the coaching consent of their member. Changes are appended to the ledger, so the next
request of anyone (a coach's timeline, a researcher's extract) already follows them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field, field_validator

from backend.api.governed import GOVERNED_RESPONSES, Gov, Guard, Ticket
from backend.exceptions import NotFound
from backend.governance import consent
from backend.query import member_consent as mc
from backend.query import timeline as tl
from backend.query.viewer import target_member

router = APIRouter(prefix="/v1", tags=["consent"], responses=GOVERNED_RESPONSES)


class ConsentState(BaseModel):
    purpose: str
    category: str
    granted: bool
    consent_version: str = Field(description="the consent text version of the latest event")
    recorded_at: dt.datetime


class ConsentEvent(BaseModel):
    purpose: str
    category: str
    action: Literal["grant", "withdraw"]
    consent_version: str
    recorded_at: dt.datetime
    by_member: bool = Field(description="recorded by the member, not on their behalf")


class MemberConsent(BaseModel):
    member: str
    effective: list[ConsentState] = Field(
        description="the latest decision per purpose x category (none recorded: no consent)"
    )
    history: list[ConsentEvent] = Field(description="the ledger, newest first")


class ConsentChange(BaseModel):
    purpose: Annotated[
        str,
        Field(
            pattern=r"^(coaching|study:[a-z0-9][a-z0-9-]{1,62})$",
            description="`coaching` or `study:<study id>`",
        ),
    ]
    category: Annotated[str, Field(json_schema_extra={"enum": list(consent.CATEGORIES)})]
    granted: bool = Field(description="true grants, false withdraws")
    consent_version: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$",
            description="the version of the consent text the member was shown",
        ),
    ]

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str) -> str:
        if value not in consent.CATEGORIES:
            raise ValueError(f"unknown data category; known: {', '.join(consent.CATEGORIES)}")
        return value


def _invalid(field: str, msg: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": ["body", field], "type": "value_error", "msg": msg}],
    )


def _read(gov: Gov, ticket: Ticket, member: str) -> MemberConsent:
    with gov.backend_pool.connection() as conn:
        target = target_member(conn, ticket.viewer, member)
        if target is None or not tl.can_view(conn, ticket.viewer, target):
            # Not "forbidden": whether such a member exists is not the caller's to learn.
            raise NotFound("no such member")
        effective, history = mc.for_viewer(conn, ticket.viewer, target)
    ticket.row_count = len(history)
    return MemberConsent(
        member=member,
        effective=[ConsentState.model_validate(e, from_attributes=True) for e in effective],
        history=[ConsentEvent.model_validate(e, from_attributes=True) for e in history],
    )


@router.get("/members/{member}/consent", response_model=MemberConsent)
def member_consent(
    gov: Gov,
    ticket: Annotated[Ticket, Guard("members/:member/consent", "read", action="consent.read")],
    member: str,
) -> MemberConsent:
    """A member's consent (`self` for one's own): what is in force and the ledger behind it.
    A coach sees the coaching consent of an assigned member only."""
    return _read(gov, ticket, member)


@router.post(
    "/members/self/consent",
    response_model=MemberConsent,
    status_code=status.HTTP_201_CREATED,
    responses={422: {"description": "unknown purpose, study or category"}},
)
def change_consent(
    gov: Gov,
    ticket: Annotated[Ticket, Guard("members/self/consent", "write", action="consent.change")],
    body: ConsentChange,
) -> MemberConsent:
    """Grant or withdraw the caller's consent for one purpose x data category, against the
    consent text version they saw. In force from the very next request."""
    ticket.action = "consent.grant" if body.granted else "consent.withdraw"
    ticket.params = body.model_dump(mode="json")
    with gov.backend_pool.connection() as conn:
        target = target_member(conn, ticket.viewer, "self")
        if target is None:
            raise NotFound("no member record for this account")
        if body.purpose.startswith("study:"):
            # After authentication: study ids are not for strangers to probe.
            state = mc.study_state(conn, body.purpose.removeprefix("study:"))
            if state is None:
                raise _invalid("purpose", "no such study")
            if state == "closed" and body.granted:
                raise _invalid("purpose", "the study is closed: consent can only be withdrawn")
        consent.record(
            conn,
            member=target,
            purpose=body.purpose,
            category=body.category,
            granted=body.granted,
            consent_version=body.consent_version,
            recorded_by=ticket.viewer.user,
            evidence={"channel": "api", "request_id": str(ticket.request_id)},
        )
    return _read(gov, ticket, "self")
