"""The study registry: researchers list the studies they work on; admins create studies,
add and remove researchers, and close studies. Every change is audited by the route's guard."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field

from backend.api.governed import GOVERNED_RESPONSES, Gov, Guard, Ticket
from backend.exceptions import NotFound
from backend.governance import studies as st
from backend.governance.policy import USER_NAME_PATTERN

if TYPE_CHECKING:
    from psycopg import Connection

router = APIRouter(prefix="/v1", tags=["studies"], responses=GOVERNED_RESPONSES)

StudyId = Annotated[str, Field(pattern=st.STUDY_ID)]
_CREATED: dict[int | str, dict[str, Any]] = {
    200: {"description": "already so: nothing changed"},
    201: {"description": "created"},
}


class StudyOut(BaseModel):
    study_id: str
    title: str
    created_by: str
    created_at: dt.datetime
    closed_at: dt.datetime | None
    researchers: list[str]
    access_level: Literal["aggregate", "row-level"]


class StudyIn(BaseModel):
    study_id: StudyId
    title: Annotated[str, Field(min_length=1, max_length=200)]


class ResearcherIn(BaseModel):
    researcher: Annotated[str, Field(pattern=USER_NAME_PATTERN, description="Hub user")]


class Change(BaseModel):
    study_id: str
    changed: bool


def _status(response: Response, created: bool) -> None:
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK


@router.get("/studies", response_model=list[StudyOut])
def study_list(
    gov: Gov, ticket: Annotated[Ticket, Guard("studies", "read", action="studies.list")]
) -> list[StudyOut]:
    """The studies you work on (an admin: every study)."""
    who = None if ticket.viewer.has("admin") else ticket.viewer.user
    with gov.query_pool.connection() as conn:
        found = st.listing(conn, who)
    ticket.row_count = len(found)
    return [StudyOut(**{**s.__dict__, "researchers": list(s.researchers)}) for s in found]


@router.get(
    "/studies/{study}",
    response_model=StudyOut,
    responses={404: {"description": "no such study, or not one you work on"}},
)
def study_get(
    gov: Gov,
    ticket: Annotated[Ticket, Guard("studies", "read", action="studies.read")],
    study: StudyId,
) -> StudyOut:
    """One study (its access level among the rest), if you work on it (an admin: any)."""
    who = None if ticket.viewer.has("admin") else ticket.viewer.user
    with gov.query_pool.connection() as conn:
        found = [s for s in st.listing(conn, who) if s.study_id == study]
    if not found:
        raise NotFound("no such study for you")
    ticket.row_count = 1
    return StudyOut(**{**found[0].__dict__, "researchers": list(found[0].researchers)})


@router.post("/studies", response_model=Change, responses=_CREATED)
def study_create(
    gov: Gov,
    ticket: Annotated[Ticket, Guard("studies", "write", action="studies.create")],
    response: Response,
    body: StudyIn,
) -> Change:
    """Declare a study (a purpose members can consent to)."""
    ticket.params = body.model_dump()
    with gov.backend_pool.connection() as conn:
        created = st.create(conn, body.study_id, body.title, ticket.viewer.user)
    ticket.params["changed"] = created
    _status(response, created)
    return Change(study_id=body.study_id, changed=created)


def _change(
    gov: Gov,
    ticket: Ticket,
    response: Response,
    study: str,
    params: dict[str, Any],
    apply: Any,
    created_is_201: bool = False,
) -> Change:
    ticket.params = params
    with gov.backend_pool.connection() as conn:
        changed = bool(apply(conn))  # NoSuchStudy: 404
    ticket.params["changed"] = changed
    _status(response, created_is_201 and changed)
    return Change(study_id=study, changed=changed)


def _staff(
    gov: Gov, ticket: Ticket, response: Response, study: str, body: ResearcherIn, add: bool
) -> Change:
    def change(conn: Connection) -> bool:
        if add:  # refused (422) for a name with no researcher account
            return st.add_researcher(conn, study, body.researcher, accounts=gov.accounts)
        return st.remove_researcher(conn, study, body.researcher)

    return _change(gov, ticket, response, study, body.model_dump(), change, created_is_201=add)


@router.post(
    "/studies/{study}/researchers",
    response_model=Change,
    responses={
        **_CREATED,
        404: {"description": "no such study"},
        422: {"description": "no account with the researcher role by that name"},
    },
)
def study_add_researcher(
    gov: Gov,
    ticket: Annotated[
        Ticket, Guard("studies/:study/researchers", "write", action="studies.researchers.add")
    ],
    response: Response,
    study: StudyId,
    body: ResearcherIn,
) -> Change:
    """Let a researcher work on a study (they see its consenting members, pseudonymised)."""
    return _staff(gov, ticket, response, study, body, add=True)


@router.post(
    "/studies/{study}/researchers/revoke",
    response_model=Change,
    responses={404: {"description": "no such study"}},
)
def study_remove_researcher(
    gov: Gov,
    ticket: Annotated[
        Ticket,
        Guard("studies/:study/researchers", "write", action="studies.researchers.remove"),
    ],
    response: Response,
    study: StudyId,
    body: ResearcherIn,
) -> Change:
    """Take a researcher off a study: their next request on it is refused."""
    return _staff(gov, ticket, response, study, body, add=False)


@router.post(
    "/studies/{study}/close",
    response_model=Change,
    responses={404: {"description": "no such study"}},
)
def study_close(
    gov: Gov,
    ticket: Annotated[Ticket, Guard("studies/:study/close", "write", action="studies.close")],
    response: Response,
    study: StudyId,
) -> Change:
    """Close a study for good: nobody's requests on it are answered any more."""
    return _change(gov, ticket, response, study, {}, lambda conn: st.close(conn, study))


class AccessLevelIn(BaseModel):
    level: Literal["aggregate", "row-level"] = Field(
        description="aggregate: cohort statistics only; row-level: extracts and training sets too"
    )


@router.put(
    "/studies/{study}/access-level",
    response_model=Change,
    responses={404: {"description": "no such study"}},
)
def study_access_level(
    gov: Gov,
    ticket: Annotated[
        Ticket, Guard("studies/:study/access-level", "write", action="studies.access_level")
    ],
    response: Response,
    study: StudyId,
    body: AccessLevelIn,
) -> Change:
    """Set what a study's researchers may pull: `aggregate` or `row-level` (new studies:
    aggregate). Takes effect on their next request."""
    return _change(
        gov,
        ticket,
        response,
        study,
        body.model_dump(),
        lambda conn: st.set_access_level(conn, study, body.level),
    )
