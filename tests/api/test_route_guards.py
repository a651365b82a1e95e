"""Every route of the backend is, by its signature, one of: public (health, the docs),
ingestion (a source API key), or governed by a guard whose resource the policy model knows.
A new route that forgets its guard, or names a resource no rule grants, fails here.
No stack needed: the app is only built, never started."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount

from backend.api.app import create_app
from backend.api.deps import ingest_source
from backend.api.governed import Guard, RouteGuard, Ticket
from backend.governance.policy import DEFAULT_POLICY

PUBLIC_PATHS = frozenset({"/healthz", "/docs", "/redoc", "/openapi.json"})
PUBLIC_MOUNTS = frozenset({"/docs-assets"})


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _known(resource: str, act: str) -> bool:
    """A rule of the baseline policy grants `act` on exactly this resource pattern."""
    return any(
        pattern == resource and action in (act, "*") for _, pattern, action in DEFAULT_POLICY
    )


def problems(app: FastAPI) -> list[str]:
    found: list[str] = []
    # Routes of included routers as the app serves them (prefix and router dependencies).
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, Mount):
            if route.path not in PUBLIC_MOUNTS:
                found.append(f"mount {route.path}: not a known public mount")
            continue
        if not isinstance(route.original_route, APIRoute):
            if route.path not in PUBLIC_PATHS:
                found.append(f"{route.path}: not an API route")
            continue
        label = f"{','.join(sorted(route.methods or ()))} {route.path}"
        calls = list(_calls(route.dependant))
        guards = [c for c in calls if isinstance(c, RouteGuard)]
        ingest = ingest_source in calls
        if route.path in PUBLIC_PATHS:
            if guards or ingest:
                found.append(f"{label}: public, yet guarded")
            continue
        if ingest and not guards:
            continue
        if len(guards) != 1:
            found.append(f"{label}: {len(guards)} guards (public, ingestion or one guard)")
            continue
        guard = guards[0]
        if not _known(guard.resource, guard.act):
            found.append(f"{label}: no policy rule grants {guard.act} on '{guard.resource}'")
        missing = set(guard.path_params) - set(route.param_convertors)
        if missing:
            found.append(f"{label}: resource names {sorted(missing)}, not in the path")
    return found


def test_every_route_is_public_ingestion_or_governed_with_a_known_resource() -> None:
    app = create_app(governance=lambda: None)  # type: ignore[arg-type,return-value]
    assert problems(app) == []
    paths = [r.path for r in iter_route_contexts(app.routes)]
    assert len([p for p in paths if p and p.startswith("/v1/")]) >= 20  # not an empty walk


def test_the_walk_fails_a_route_without_a_guard_or_with_an_unknown_resource() -> None:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/v1/forgotten")
    def forgotten() -> None: ...

    @app.get("/v1/cohort-stat")
    def unknown(ticket: Annotated[Ticket, Guard("cohort-stat", "read", action="x")]) -> None: ...

    @app.post("/v1/quality")
    def wrong_act(ticket: Annotated[Ticket, Guard("quality", "write", action="x")]) -> None: ...

    @app.get("/v1/studies/{other}/dataset")
    def unfilled(
        ticket: Annotated[Ticket, Guard("studies/:study/dataset", "read", action="x")],
    ) -> None: ...

    found = problems(app)
    assert len(found) == 4, found
    assert any("/v1/forgotten: 0 guards" in p for p in found)
    assert any("'cohort-stat'" in p for p in found)
    assert any("write on 'quality'" in p for p in found)
    assert any("['study'], not in the path" in p for p in found)


@pytest.mark.parametrize(
    ("pattern", "params", "expected"),
    [
        ("members/:member/timeline", {"member": "self"}, "members/self/timeline"),
        ("studies/:study/cohort-stats", {"study": "s-1"}, "studies/s-1/cohort-stats"),
        ("audit", {}, "audit"),
    ],
)
def test_the_guard_fills_the_resource_from_the_path(
    pattern: str, params: dict[str, str], expected: str
) -> None:
    assert RouteGuard(pattern, "read", action="x").concrete(params) == expected
