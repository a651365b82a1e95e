"""Policy administration for admins: the Casbin rules, grants and revocations, and coach
assignments. Every change is audited (by the route's guard, with the rule in the params); every
backend process reloads on the database's notification of the change (`Policy.open`)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field

from backend.api.governed import GOVERNED_RESPONSES, Gov, Guard, Ticket
from backend.exceptions import Conflict, NotFound, UserError
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
def policy_rules(
    gov: Gov, ticket: Annotated[Ticket, Guard("policy", "read", action="policy.list")]
) -> list[Rule]:
    """Every rule in force (deny by default: what is not here is refused)."""
    with gov.backend_pool.connection() as conn:
        rows = conn.execute(
            "select v0, v1, v2, v3 from governance.casbin_rule where ptype = 'p'"
            " order by v0, v1, v2, v3"
        ).fetchall()
    ticket.row_count = len(rows)
    return [Rule(subject=r[0], region=r[1], resource=r[2], action=r[3]) for r in rows]


def _change_rule(
    gov: Gov, ticket: Ticket, response: Response, rule: Rule, *, granted: bool
) -> PolicyChange:
    ticket.params = rule.model_dump()
    try:
        changed = gov.policy.change(PolicyRule(**rule.model_dump()), granted=granted)
    except Conflict:
        raise
    except UserError as e:
        # What `change` refuses (the lockout guard, a rule the policy model does not
        # allow) conflicts with the policy's own rules: 409, as before. Until policy.py
        # raises Conflict itself, this is the one translation left in a route.
        raise Conflict(str(e)) from None
    ticket.params["changed"] = changed
    _created(response, granted and changed)
    return PolicyChange(rule=rule, changed=changed)


def _created(response: Response, created: bool) -> None:
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK


@router.post("/policy/grants", response_model=PolicyChange, responses=_CREATED)
def policy_grant(
    gov: Gov,
    ticket: Annotated[Ticket, Guard("policy", "write", action="policy.grant")],
    response: Response,
    rule: Rule,
) -> PolicyChange:
    """Allow a subject (user or role) an action on a resource pattern, in a region."""
    return _change_rule(gov, ticket, response, rule, granted=True)


@router.post(
    "/policy/grants/revoke",
    response_model=PolicyChange,
    responses={409: {"description": "would lock administrators out"}},
)
def policy_revoke(
    gov: Gov,
    ticket: Annotated[Ticket, Guard("policy", "write", action="policy.revoke")],
    response: Response,
    rule: Rule,
) -> PolicyChange:
    """Remove a rule; in force in this process at once, in the others within their reload
    interval."""
    return _change_rule(gov, ticket, response, rule, granted=False)


@router.get("/assignments", response_model=list[Assignment])
def assignment_list(
    gov: Gov,
    ticket: Annotated[Ticket, Guard("assignments", "read", action="assignments.list")],
    coach: Annotated[str | None, Query(pattern=USER_NAME_PATTERN)] = None,
    include_revoked: bool = False,
) -> list[Assignment]:
    """Which coach has which member (current ones unless `include_revoked`)."""
    ticket.params = {"coach": coach, "include_revoked": include_revoked}
    with gov.backend_pool.connection() as conn:
        rows = asg.listing(conn, coach, current_only=not include_revoked)
    ticket.row_count = len(rows)
    return [Assignment.model_validate(r, from_attributes=True) for r in rows]


def _change_assignment(
    gov: Gov, ticket: Ticket, response: Response, body: AssignmentIn, *, assign: bool
) -> AssignmentChange:
    ticket.params = body.model_dump(mode="json")
    with gov.backend_pool.connection() as conn:
        if not asg.member_exists(conn, body.member):
            raise NotFound("no such member")
        if assign:
            changed = asg.assign(conn, body.coach, body.member)
        else:
            changed = asg.unassign(conn, body.coach, body.member)
    ticket.params["changed"] = changed
    _created(response, assign and changed)
    return AssignmentChange(assignment=body, changed=changed)


@router.post("/assignments", response_model=AssignmentChange, responses=_CREATED)
def assignment_add(
    gov: Gov,
    ticket: Annotated[Ticket, Guard("assignments", "write", action="assignments.assign")],
    response: Response,
    body: AssignmentIn,
) -> AssignmentChange:
    """Assign a member to a coach (the coach then sees what the member consents to)."""
    return _change_assignment(gov, ticket, response, body, assign=True)


@router.post("/assignments/revoke", response_model=AssignmentChange)
def assignment_revoke(
    gov: Gov,
    ticket: Annotated[Ticket, Guard("assignments", "write", action="assignments.revoke")],
    response: Response,
    body: AssignmentIn,
) -> AssignmentChange:
    """End an assignment: the coach's next request no longer sees the member."""
    return _change_assignment(gov, ticket, response, body, assign=False)
