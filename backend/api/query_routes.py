"""Governed queries: member timelines (coaches, members), study datasets (researchers),
audit search (auditors). Each route declares its guard and its SQL enforces the
object-level rules again."""

from __future__ import annotations

import datetime as dt
import io
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import AwareDatetime, BaseModel, Field

from backend.api.governed import GOVERNED_RESPONSES, Gov, Guard, Ticket
from backend.exceptions import NotFound
from backend.governance import studies
from backend.governance.studies import STUDY_ID
from backend.query import dataset as ds
from backend.query import timeline as tl
from backend.query.viewer import target_member

router = APIRouter(prefix="/v1", tags=["queries"], responses=GOVERNED_RESPONSES)

MAX_RANGE = dt.timedelta(days=366)


class TimelinePoint(BaseModel):
    time: dt.datetime
    code: str
    value: float
    unit: str
    count: int = 1
    min: float | None = None
    max: float | None = None


class TimelinePage(BaseModel):
    member: str
    points: list[TimelinePoint]
    next_after: str | None = Field(
        None, description="pass as `after` for the next page (time|code of the last point)"
    )


def _timeline_cursor(after: str) -> tuple[dt.datetime, str]:
    """The keyset cursor a page handed out (`time|code`); anything else is the caller's
    mistake, 422 naming the parameter."""
    at, _, code = after.partition("|")
    try:
        when = dt.datetime.fromisoformat(at)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None or not code:
        raise HTTPException(
            422,
            [{"loc": ["query", "after"], "type": "value_error", "msg": "not a `next_after`"}],
        )
    return when, code


def _range(start: dt.datetime, end: dt.datetime) -> None:
    if end <= start or end - start > MAX_RANGE:
        raise HTTPException(
            422,
            [
                {
                    "loc": ["query", "end"],
                    "type": "range",
                    "msg": "end must be after start, at most 366 days later",
                }
            ],
        )


@router.get(
    "/members/{member}/timeline",
    response_model=TimelinePage,
)
def member_timeline(
    gov: Gov,
    ticket: Annotated[
        Ticket,
        Guard("members/:member/timeline", "read", action="timeline.read", purpose="coaching"),
    ],
    member: str,
    start: Annotated[AwareDatetime, Query()],
    end: Annotated[AwareDatetime, Query()],
    codes: Annotated[
        list[Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9:._-]+$")]] | None,
        Query(max_length=50),
    ] = None,
    bucket: Literal["hour", "day", "week", "month"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
    after: Annotated[
        str | None,
        Query(
            max_length=120,
            pattern=r"^[^|]+\|[^|]+$",
            description="the `next_after` of the previous page",
        ),
    ] = None,
) -> TimelinePage:
    """A member's observations, or hourly/daily/weekly/monthly buckets (mean, count, min,
    max), for the member or their coach. Buckets come from the analytics zone's rollups
    when `start` and `end` fall on bucket boundaries (the hour; midnight UTC for days,
    weeks and months), otherwise they are aggregated from the observations."""
    ticket.params = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "codes": codes,
        "bucket": bucket,
        "limit": limit,
    }
    # After authentication: a stranger learns nothing, not even what is valid.
    _range(start, end)
    cursor = _timeline_cursor(after) if after else None
    with gov.query_pool.connection() as conn:
        target = target_member(conn, ticket.viewer, member)
        points = (
            None
            if target is None
            else tl.visible_timeline(
                conn,
                ticket.viewer,
                target,
                start=start,
                end=end,
                codes=codes,
                bucket=bucket,
                limit=limit,
                after=cursor,
            )
        )
    if points is None:
        # Not "forbidden": whether such a member exists is not the caller's to learn.
        raise NotFound("no such member")
    ticket.row_count = len(points)
    last = points[-1] if len(points) == limit else None
    return TimelinePage(
        member=member,
        points=[TimelinePoint.model_validate(p, from_attributes=True) for p in points],
        next_after=f"{last.time.isoformat()}|{last.code}" if last else None,
    )


@router.get(
    "/studies/{study}/dataset",
    responses={
        200: {"content": {"application/json": {}, "application/vnd.apache.parquet": {}}},
    },
)
def study_dataset(
    gov: Gov,
    ticket: Annotated[
        Ticket,
        Guard("studies/:study/dataset", "read", action="dataset.extract", purpose="study:{study}"),
    ],
    study: Annotated[str, Field(pattern=STUDY_ID)],
    start: Annotated[AwareDatetime, Query()],
    end: Annotated[AwareDatetime, Query()],
    codes: Annotated[
        list[Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9:._-]+$")]] | None,
        Query(max_length=50),
    ] = None,
    shape: Literal["long", "wide"] = "long",
    format: Literal["json", "parquet"] = "json",
) -> Response:
    """A pseudonymised extract of a study: consenting members only, per-study pseudonyms."""
    ticket.params = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "codes": codes,
        "shape": shape,
        "format": format,
    }
    # After authentication: a stranger learns nothing, not even what is valid.
    _range(start, end)
    with gov.query_pool.connection() as conn:
        if not ds.on_study(conn, ticket.viewer, study):
            raise NotFound("no such study for you")
        studies.require_row_level(conn, study)
        frame = ds.extract(
            conn,
            ticket.viewer,
            study,
            gov.study_keys.key(study),
            start=start,
            end=end,
            codes=codes,
            shape=shape,
        )
    ticket.row_count = len(frame)
    if format == "parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return Response(buf.getvalue(), media_type="application/vnd.apache.parquet")
    return Response(
        frame.to_json(orient="records", date_format="iso"), media_type="application/json"
    )


class CriterionIn(BaseModel):
    code: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9:._-]+$")]
    op: Literal[">=", ">", "<=", "<"]
    # NaN and infinities compare to nothing a member has: the caller's mistake.
    value: Annotated[float, Field(allow_inf_nan=False)]


class CohortStatsIn(BaseModel):
    code: Annotated[
        str,
        Field(
            max_length=64,
            pattern=r"^[A-Za-z0-9:._-]+$",
            description="the measure to summarise (LOINC)",
        ),
    ]
    start: AwareDatetime
    end: AwareDatetime
    period: Literal["day", "week", "month"] = "week"
    criteria: Annotated[list[CriterionIn], Field(max_length=10)] = []
    sex: Annotated[
        list[Literal["female", "male", "other", "unknown"]] | None,
        Field(max_length=4, description="only members of these sexes (FHIR AdministrativeGender)"),
    ] = None
    age_min: Annotated[int | None, Field(ge=0, le=130, description="age in the start's year")] = (
        None
    )
    age_max: Annotated[int | None, Field(ge=0, le=130)] = None
    by: Annotated[
        list[Literal["sex", "age_band"]],
        Field(max_length=2, description="break the periods down further (10-year age bands)"),
    ] = []
    stats: Annotated[
        list[Literal["mean", "median", "sd", "p25", "p75"]], Field(min_length=1, max_length=5)
    ] = ["mean", "median"]


class CohortStatsOut(BaseModel):
    threshold: int = Field(description="cells with fewer members than this are suppressed")
    dims: list[str] = Field(description="what each row's `key` holds, in order")
    rows: list[dict[str, object]]
    suppressed: list[dict[str, object]]
    notes: list[str]


@router.post(
    "/studies/{study}/cohort-stats",
    response_model=CohortStatsOut,
)
def study_cohort_stats(
    gov: Gov,
    ticket: Annotated[
        Ticket,
        Guard(
            "studies/:study/cohort-stats", "read", action="cohort.stats", purpose="study:{study}"
        ),
    ],
    study: Annotated[str, Field(pattern=STUDY_ID)],
    body: CohortStatsIn,
) -> CohortStatsOut:
    """Statistics of one measure by period for a cohort, under disclosure control:
    small cells and their complements are suppressed, and an answer that differs from an
    earlier one by fewer than k people is withheld."""
    from backend.query import cohort

    ticket.params = body.model_dump(mode="json")
    # After authentication: a stranger learns nothing, not even what is valid.
    _range(body.start, body.end)
    with gov.query_pool.connection() as q, gov.backend_pool.connection() as b:
        if not ds.on_study(q, ticket.viewer, study):
            raise NotFound("no such study for you")
        result = cohort.cohort_stats(
            q,
            b,
            ticket.viewer,
            study,
            gov.study_keys.key(study),
            code=body.code,
            start=body.start,
            end=body.end,
            period=body.period,
            criteria=[cohort.Criterion(c.code, c.op, c.value) for c in body.criteria],
            demographics=cohort.Demographics(
                frozenset(body.sex) if body.sex is not None else None,
                body.age_min,
                body.age_max,
            ),
            by=list(dict.fromkeys(body.by)),
            stats=body.stats,
        )
    ticket.row_count = len(result.table)
    out = result.to_json(audience="researcher")
    return CohortStatsOut(
        threshold=result.policy.k,
        dims=out.get("dims", ["period"]),
        rows=out.get("rows", []),
        suppressed=out.get("suppressed", []),
        notes=out.get("notes", []),
    )
