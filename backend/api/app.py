"""The backend application: routes, error shapes, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from backend.api import (
    audit_routes,
    consent_routes,
    ingest_routes,
    policy_routes,
    query_routes,
    steward_routes,
)
from backend.api.governance_state import GovernanceState
from backend.api.request_guard import RequestGuard, RequestLimits
from backend.api.state import AppState
from backend.logs import get as get_logger

log = get_logger(__name__)


def create_app(
    governance: Callable[[], GovernanceState] | None = None,
    limits: RequestLimits | None = None,
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
        description="Governed access to the Rejuve health-data platform.",
    )
    app.add_middleware(RequestGuard, limits=limits or RequestLimits())
    app.include_router(ingest_routes.router)
    if governance is not None:
        for module in (query_routes, consent_routes, steward_routes, audit_routes, policy_routes):
            app.include_router(module.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Never a stack trace or SQL in a response; the log gets the type, not the data.
        log.error("unhandled error", path=request.url.path, error=type(exc).__name__)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    return app
