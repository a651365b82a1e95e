"""Governed feature reads: a member's online features (the member, or their assigned coach
with coaching consent) through Feast's online store, and a study's point-in-time training
sets (researchers of a `row-level` study) through our own SQL over the analytics zone.
Feast has no notion of consent: nobody reads it except through these routes."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from psycopg import sql
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from backend.api.governed import GOVERNED_RESPONSES, Gov, Guard, Ticket
from backend.exceptions import NotFound, ServiceDown
from backend.features import catalogue
from backend.features.catalogue import view_codes
from backend.governance import studies
from backend.governance.studies import STUDY_ID
from backend.query import dataset as ds
from backend.query import row_rules
from backend.query import training_set as ts
from backend.query.viewer import target_member

router = APIRouter(prefix="/v1", tags=["features"], responses=GOVERNED_RESPONSES)

MAX_ROWS = 200_000
Service = Literal["coaching_overview", "research_model"]


def get_store(request: Request) -> Any:
    store = getattr(request.app.state, "features", None)
    if store is None:
        raise ServiceDown("the feature store is not configured on this backend")
    return store


Store = Annotated[Any, Depends(get_store)]


class MemberFeatures(BaseModel):
    member: str
    features: dict[str, Any] = Field(description="`<view>__<feature>`: value or null")
    as_of: dict[str, str | None] = Field(description="per view: when its values were known")
    withheld: list[str] = Field(
        default_factory=list, description="views the member does not consent to share with you"
    )


# The viewer may see the member (self, or assigned coach) and, per view, whether every
# code the view is computed from is shared: all of them for the member, else the codes
# the member consents to for coaching.
_VISIBLE = sql.SQL("select {may}, case when {own} then %(all)s::text[] else {coach} end").format(
    may=row_rules.may_see_member(),
    own=row_rules.MEMBER_SELF,
    coach=row_rules.COACHING_CODES,
)


@dataclass(frozen=True)
class _Plan:
    """A service's views (name, features, codes) and every code any view needs."""

    views: tuple[tuple[str, tuple[str, ...], frozenset[str]], ...]
    every: list[str]


_PLANS: dict[str, tuple[float, _Plan]] = {}
_PLAN_TTL = 60.0  # as the registry cache: a new `feast apply` shows within a minute


def _plan(store: Any, service: str) -> _Plan:
    """Feast rebuilds view objects from the registry proto on every lookup (milliseconds);
    a request needs only names and codes."""
    hit = _PLANS.get(service)
    if hit and time.monotonic() - hit[0] < _PLAN_TTL:
        return hit[1]
    svc = store.get_feature_service(service)
    views = tuple(
        (p.name, tuple(f.name for f in p.features), frozenset(view_codes(p.name)))
        for p in svc.feature_view_projections
    )
    plan = _Plan(views, sorted({c for _, _, codes in views for c in codes}))
    _PLANS[service] = (time.monotonic(), plan)
    return plan


class FeatureView(BaseModel):
    name: str
    features: list[str]
    services: list[str] = Field(description="the feature services that include this view")
    description: str = ""


@router.get("/feature-views", response_model=list[FeatureView])
def feature_views(
    store: Store,
    ticket: Annotated[Ticket, Guard("feature-views", "read", action="features.catalogue")],
) -> list[FeatureView]:
    """The feature catalogue: each feature view, its features and the services that include
    it. Definitions only, no member's data: what `features` and `service` may name."""
    views = [
        FeatureView(name=name, features=features, services=services, description=description)
        for name, features, services, description in catalogue.views(store)
    ]
    ticket.row_count = len(views)
    return views


@router.get("/members/{member}/features", response_model=MemberFeatures)
def member_features(
    gov: Gov,
    store: Store,
    ticket: Annotated[
        Ticket,
        Guard("members/:member/features", "read", action="features.read", purpose="coaching"),
    ],
    member: str,
    service: Service = "coaching_overview",
) -> MemberFeatures:
    """A member's latest features (Feast online store), for the member or their coach."""
    ticket.params = {"service": service}
    plan = _plan(store, service)
    with gov.query_pool.connection() as conn:
        target = target_member(conn, ticket.viewer, member)
        row = None
        if target is not None:
            row = conn.execute(
                _VISIBLE, {**row_rules.params(ticket.viewer, member=target), "all": plan.every}
            ).fetchone()
            conn.rollback()
    if target is None or row is None or not row[0]:
        # Not "forbidden": whether such a member exists is not the caller's to learn.
        raise NotFound("no such member")
    shared = set(row[1] or ())
    allowed = [(name, feats) for name, feats, codes in plan.views if codes <= shared]
    withheld = sorted(name for name, _, codes in plan.views if not codes <= shared)
    refs = [f"{name}:{f}" for name, feats in allowed for f in feats]
    values: dict[str, Any] = {}
    as_of: dict[str, str | None] = {}
    if refs:
        got = store.get_online_features(
            features=refs, entity_rows=[{"member_id": str(target)}], full_feature_names=True
        ).to_dict(include_event_timestamps=True)
        for name, feats in allowed:
            stamps = []
            for f in feats:
                key = f"{name}__{f}"
                values[key] = _plain(got[key][0])
                stamps.append(got.get(f"{key}__ts", [0])[0])
            known = max(stamps, default=0)
            as_of[name] = dt.datetime.fromtimestamp(known, dt.UTC).isoformat() if known else None
    ticket.row_count = 1 if values else 0
    return MemberFeatures(member=member, features=values, as_of=as_of, withheld=withheld)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


class EntityRow(BaseModel):
    pseudonym: Annotated[str, Field(max_length=64)]
    at: AwareDatetime


class TrainingSetIn(BaseModel):
    rows: Annotated[list[EntityRow], Field(min_length=1, max_length=MAX_ROWS)]
    service: Service | None = None
    features: (
        Annotated[
            list[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*:[a-z_][a-z0-9_]*$")]],
            Field(min_length=1, max_length=100),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _one_of(self) -> TrainingSetIn:
        if (self.service is None) == (self.features is None):
            raise ValueError("give either `service` or `features`")
        return self


class TrainingSet(BaseModel):
    columns: list[str]
    rows: list[list[Any]]


@router.post(
    "/studies/{study}/training-set",
    response_model=TrainingSet,
    responses={403: {"description": "the study's access level is aggregate"}},
)
def study_training_set(
    gov: Gov,
    store: Store,
    ticket: Annotated[
        Ticket,
        Guard(
            "studies/:study/training-set",
            "read",
            action="features.training_set",
            purpose="study:{study}",
        ),
    ],
    study: Annotated[str, Field(pattern=STUDY_ID)],
    body: TrainingSetIn,
) -> TrainingSet:
    """Features as of each row's `at` (never a value from after it), for consenting
    members only, keyed by the study's pseudonyms; no member id leaves."""
    ticket.params = {"rows": len(body.rows), "service": body.service, "features": body.features}
    try:
        specs = ts.specs_from_feast(store, body.service, body.features)
    except (KeyError, LookupError, ValueError) as e:
        raise HTTPException(
            422, [{"loc": ["body", "features"], "type": "value_error", "msg": f"unknown {e}"}]
        ) from None
    with gov.query_pool.connection() as conn:
        if not ds.on_study(conn, ticket.viewer, study):
            raise NotFound("no such study for you")
        studies.require_row_level(conn, study)
        out = list(
            ts.training_set(
                conn,
                ticket.viewer,
                study,
                gov.study_keys.key(study),
                specs,
                [(r.pseudonym, r.at) for r in body.rows],
            )
        )
    ticket.row_count = len(out)
    return TrainingSet(
        columns=ts.columns(specs),
        rows=[[p, at.isoformat(), *(_plain(v) for v in rest)] for p, at, *rest in out],
    )
