"""The study registry: researchers list the studies they work on; admins create studies,
add and remove researchers, and close studies. Every change is audited by `governed`."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from backend.api.governed import GOVERNED_RESPONSES, Gov, Ticket, governed
from backend.governance import studies as st
from backend.governance.policy import USER_NAME_PATTERN

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


class StudyIn(BaseModel):
    study_id: StudyId
    title: Annotated[str, Field(min_length=1, max_length=200)]


class ResearcherIn(BaseModel):
    researcher: Annotated[str, Field(pattern=USER_NAME_PATTERN, description="Hub user")]


class Change(BaseModel):
    study_id: str
    changed: bool


def _status(ticket: Ticket, response: Response, created: bool) -> None:
    ticket.status = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    response.status_code = ticket.status


@router.get("/studies", response_model=list[StudyOut])
def study_list(request: Request, gov: Gov) -> list[StudyOut]:
    """The studies you work on (an admin: every study)."""
    with governed(request, gov, action="studies.list", resource="studies") as ticket:
        assert ticket.viewer is not None
        who = None if ticket.viewer.has("admin") else ticket.viewer.user
        with gov.query_pool.connection() as conn:
            found = st.listing(conn, who)
        ticket.row_count = len(found)
    return [StudyOut(**{**s.__dict__, "researchers": list(s.researchers)}) for s in found]


@router.post("/studies", response_model=Change, responses=_CREATED)
def study_create(request: Request, gov: Gov, response: Response, body: StudyIn) -> Change:
    """Declare a study (a purpose members can consent to)."""
    with governed(
        request,
        gov,
        action="studies.create",
        resource="studies",
        act="write",
        params=body.model_dump(),
    ) as ticket:
        assert ticket.viewer is not None
        with gov.backend_pool.connection() as conn:
            created = st.create(conn, body.study_id, body.title, ticket.viewer.user)
        ticket.params["changed"] = created
        _status(ticket, response, created)
    return Change(study_id=body.study_id, changed=created)


def _change(
    request: Request,
    gov: Gov,
    response: Response,
    study: str,
    what: str,
    params: dict[str, Any],
    apply: Any,
    created_is_201: bool = False,
) -> Change:
    with governed(
        request,
        gov,
        action=f"studies.{what}",
        resource=f"studies/{study}/{what.split('.')[0]}",
        act="write",
        study=study,
        params=params,
    ) as ticket:
        with gov.backend_pool.connection() as conn:
            try:
                changed = bool(apply(conn))
            except st.NoSuchStudy:
                raise HTTPException(404, "no such study") from None
        ticket.params["changed"] = changed
        _status(ticket, response, created_is_201 and changed)
    return Change(study_id=study, changed=changed)


def _staff(
    request: Request, gov: Gov, response: Response, study: str, body: ResearcherIn, add: bool
) -> Change:
    change = st.add_researcher if add else st.remove_researcher
    return _change(
        request,
        gov,
        response,
        study,
        f"researchers.{'add' if add else 'remove'}",
        body.model_dump(),
        lambda conn: change(conn, study, body.researcher),
        created_is_201=add,
    )


@router.post(
    "/studies/{study}/researchers",
    response_model=Change,
    responses={**_CREATED, 404: {"description": "no such study"}},
)
def study_add_researcher(
    request: Request, gov: Gov, response: Response, study: StudyId, body: ResearcherIn
) -> Change:
    """Let a researcher work on a study (they see its consenting members, pseudonymised)."""
    return _staff(request, gov, response, study, body, add=True)


@router.post(
    "/studies/{study}/researchers/revoke",
    response_model=Change,
    responses={404: {"description": "no such study"}},
)
def study_remove_researcher(
    request: Request, gov: Gov, response: Response, study: StudyId, body: ResearcherIn
) -> Change:
    """Take a researcher off a study: their next request on it is refused."""
    return _staff(request, gov, response, study, body, add=False)


@router.post(
    "/studies/{study}/close",
    response_model=Change,
    responses={404: {"description": "no such study"}},
)
def study_close(request: Request, gov: Gov, response: Response, study: StudyId) -> Change:
    """Close a study for good: nobody's requests on it are answered any more."""
    return _change(request, gov, response, study, "close", {}, lambda conn: st.close(conn, study))
