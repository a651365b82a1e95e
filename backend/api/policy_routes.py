"""Policy administration for admins: the Casbin rules, grants and revocations, and coach
assignments. Every change is audited (by `governed`, with the rule in the params); every
backend process reloads on the database's notification of the change (`Policy.open`)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field

from backend.api.governed import GOVERNED_RESPONSES, Gov, Ticket, governed
from backend.exceptions import UserError
from backend.governance import assignments as asg
from backend.governance.policy import RULE_PATTERNS, USER_NAME_PATTERN
from backend.governance.policy import Rule as PolicyRule

router = APIRouter(prefix="/v1", tags=["policy"], responses=GOVERNED_RESPONSES)

_CREATED: dict[int | str, dict[str, Any]] = {
    200: {"description": "already in force: nothing changed"},
    201: {"description": "now in force"},
}


class Rule(BaseModel):
    subject: Annotated[
        str,
        Field(
            pattern=RULE_PATTERNS["subject"],
            description="user:<Hub user> or role:<role>",
            examples=["role:coach", "user:alice"],
        ),
    ]
    region: Annotated[str, Field(pattern=RULE_PATTERNS["region"], description="or * for all")] = "*"
    resource: Annotated[
        str,
        Field(pattern=RULE_PATTERNS["resource"], description="e.g. members/:member/timeline"),
    ]
    action: Annotated[str, Field(pattern=RULE_PATTERNS["action"])]


class PolicyChange(BaseModel):
    rule: Rule
    changed: bool


class AssignmentIn(BaseModel):
    coach: Annotated[str, Field(pattern=USER_NAME_PATTERN, description="a Hub user")]
    member: uuid.UUID


class Assignment(BaseModel):
    coach: str
    member_id: uuid.UUID
    assigned_at: dt.datetime
    revoked_at: dt.datetime | None


class AssignmentChange(BaseModel):
    assignment: AssignmentIn
    changed: bool


@router.get("/policy", response_model=list[Rule])
def policy_rules(request: Request, gov: Gov) -> list[Rule]:
    """Every rule in force (deny by default: what is not here is refused)."""
    with governed(request, gov, action="policy.list", resource="policy") as ticket:
        with gov.backend_pool.connection() as conn:
            rows = conn.execute(
                "select v0, v1, v2, v3 from governance.casbin_rule where ptype = 'p'"
                " order by v0, v1, v2, v3"
            ).fetchall()
        ticket.row_count = len(rows)
    return [Rule(subject=r[0], region=r[1], resource=r[2], action=r[3]) for r in rows]


def _change_rule(
    request: Request, gov: Gov, response: Response, rule: Rule, *, granted: bool
) -> PolicyChange:
    verb = "grant" if granted else "revoke"
    with governed(
        request,
        gov,
        action=f"policy.{verb}",
        resource="policy",
        act="write",
        params=rule.model_dump(),
    ) as ticket:
        try:
            changed = gov.policy.change(PolicyRule(**rule.model_dump()), granted=granted)
        except UserError as e:
            raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
        ticket.params["changed"] = changed
        _created(ticket, response, granted and changed)
    return PolicyChange(rule=rule, changed=changed)


def _created(ticket: Ticket, response: Response, created: bool) -> None:
    ticket.status = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    response.status_code = ticket.status


@router.post("/policy/grants", response_model=PolicyChange, responses=_CREATED)
def policy_grant(request: Request, gov: Gov, response: Response, rule: Rule) -> PolicyChange:
    """Allow a subject (user or role) an action on a resource pattern, in a region."""
    return _change_rule(request, gov, response, rule, granted=True)


@router.post(
    "/policy/grants/revoke",
    response_model=PolicyChange,
    responses={409: {"description": "would lock administrators out"}},
)
def policy_revoke(request: Request, gov: Gov, response: Response, rule: Rule) -> PolicyChange:
    """Remove a rule; in force in this process at once, in the others within their reload
    interval."""
    return _change_rule(request, gov, response, rule, granted=False)


@router.get("/assignments", response_model=list[Assignment])
def assignment_list(
    request: Request,
    gov: Gov,
    coach: Annotated[str | None, Query(pattern=USER_NAME_PATTERN)] = None,
    include_revoked: bool = False,
) -> list[Assignment]:
    """Which coach has which member (current ones unless `include_revoked`)."""
    params = {"coach": coach, "include_revoked": include_revoked}
    with governed(
        request, gov, action="assignments.list", resource="assignments", params=params
    ) as ticket:
        with gov.backend_pool.connection() as conn:
            rows = asg.listing(conn, coach, current_only=not include_revoked)
        ticket.row_count = len(rows)
    return [Assignment.model_validate(r, from_attributes=True) for r in rows]


def _change_assignment(
    request: Request, gov: Gov, response: Response, body: AssignmentIn, *, assign: bool
) -> AssignmentChange:
    with governed(
        request,
        gov,
        action="assignments.assign" if assign else "assignments.revoke",
        resource="assignments",
        act="write",
        params=body.model_dump(mode="json"),
    ) as ticket:
        with gov.backend_pool.connection() as conn:
            if not asg.member_exists(conn, body.member):
                raise HTTPException(404, "no such member")
            if assign:
                changed = asg.assign(conn, body.coach, body.member)
            else:
                changed = asg.unassign(conn, body.coach, body.member)
        ticket.params["changed"] = changed
        _created(ticket, response, assign and changed)
    return AssignmentChange(assignment=body, changed=changed)


@router.post("/assignments", response_model=AssignmentChange, responses=_CREATED)
def assignment_add(
    request: Request, gov: Gov, response: Response, body: AssignmentIn
) -> AssignmentChange:
    """Assign a member to a coach (the coach then sees what the member consents to)."""
    return _change_assignment(request, gov, response, body, assign=True)


@router.post("/assignments/revoke", response_model=AssignmentChange)
def assignment_revoke(
    request: Request, gov: Gov, response: Response, body: AssignmentIn
) -> AssignmentChange:
    """End an assignment: the coach's next request no longer sees the member."""
    return _change_assignment(request, gov, response, body, assign=False)
