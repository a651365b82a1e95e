"""The backend application: routes, error shapes, lifespan."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.api import (
    audit_routes,
    coach_routes,
    consent_routes,
    feature_routes,
    ingest_routes,
    openapi_docs,
    policy_routes,
    query_routes,
    steward_routes,
    study_routes,
)
from backend.api.governance_state import GovernanceState
from backend.api.governed import record_refusal, storable
from backend.api.request_guard import TOO_MANY, RequestGuard, RequestLimits, Scope
from backend.api.state import AppState
from backend.exceptions import UserError, http_status


def _governed_path(path: str) -> bool:
    # Devices' ingestion keeps its own ledger; people's requests are all under /v1/.
    return path.startswith("/v1/") and not path.startswith("/v1/ingest/")


def create_app(
    governance: Callable[[], GovernanceState] | None = None,
    limits: RequestLimits | None = None,
    features: Callable[[], object] | None = None,
    **state_kw: object,
) -> FastAPI:
    """`state_kw` are AppState.open's arguments, `governance` opens the governed path's
    state and `limits` bound request sizes; the entry point builds them from Settings."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = AppState.open(**state_kw)  # type: ignore[arg-type]
        app.state.rejuve = state
        gov = governance() if governance else None
        app.state.governance = gov
        # Feast's store (registry cache, Redis client): one per worker process.
        app.state.features = features() if features else None
        # What start-up built lives as long as the process. Frozen, it is left out of every
        # later collection: unfrozen, ~250,000 objects (Feast, pandas, Casbin) made each
        # full collection a 150-600 ms pause of whichever request triggered it.
        gc.freeze()
        try:
            yield
        finally:
            state.close()
            if gov is not None:
                gov.close()

    app = FastAPI(
        title="Rejuve backend",
        version="0.1.0",
        lifespan=lifespan,
        description=openapi_docs.DESCRIPTION,
        # Served from the platform itself (openapi_docs), not from a CDN.
        docs_url=None,
        redoc_url=None,
    )

    async def audit_unrouted(
        scope: Scope, headers: Mapping[str, str], status_code: int, reason: str
    ) -> int:
        """A refusal no governed route saw (too large, malformed, no such endpoint) is
        audited too: every request to the governed API leaves one record. Returns the
        status to answer with (429 for an anonymous caller over its limit)."""
        path = str(scope.get("path", ""))
        gov = getattr(app.state, "governance", None)
        state = scope.get("state") or {}
        if gov is None or state.get("audited") or not _governed_path(path):
            return status_code
        client = scope.get("client")
        return await record_refusal(
            gov,
            method=str(scope.get("method", "")),
            path=path,
            authorization=headers.get("authorization"),
            client=client[0] if client else None,
            request_id=state.get("request_id"),
            status_code=status_code,
            reason=reason[:200],
        )

    async def guard_refusal(scope: Scope, status_code: int, reason: str) -> int:
        return await audit_unrouted(scope, Headers(scope=scope), status_code, reason)

    app.add_middleware(RequestGuard, limits=limits or RequestLimits(), on_refusal=guard_refusal)
    app.include_router(ingest_routes.router)
    if governance is not None:
        for module in (
            query_routes,
            consent_routes,
            steward_routes,
            audit_routes,
            policy_routes,
            study_routes,
            feature_routes,
            coach_routes,
        ):
            app.include_router(module.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    openapi_docs.install(app)

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError) -> Response:
        if await audit_unrouted(request.scope, request.headers, 422, "invalid input") == 429:
            return _throttled()
        # The errors echo the input: made printable (a lone surrogate cannot be encoded).
        return JSONResponse({"detail": storable(jsonable_encoder(exc.errors()))}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        answer = await audit_unrouted(
            request.scope, request.headers, exc.status_code, str(exc.detail)
        )
        if answer == 429 and exc.status_code != 429:
            return _throttled()
        return await http_exception_handler(request, exc)

    @app.exception_handler(UserError)
    async def domain_error(request: Request, exc: UserError) -> Response:
        # The one place a domain error becomes an HTTP status (backend.exceptions' table);
        # a governed route's guard has already audited it with the same status.
        code = http_status(exc)
        await audit_unrouted(request.scope, request.headers, code, str(exc))
        return JSONResponse({"detail": str(exc)}, status_code=code)

    # Anything else: RequestGuard answers 500 (with the request id) and logs one line.
    return app


def _throttled() -> Response:
    return JSONResponse({"detail": TOO_MANY}, status_code=429, headers={"Retry-After": "1"})
