"""Dependencies shared by routes: the guards are visible in every route's signature."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.api.api_keys import SourceKey, verify
from backend.api.state import AppState

_bearer = HTTPBearer(auto_error=False, description="a source's API key: rk_<prefix>_<secret>")


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.rejuve
    return state


State = Annotated[AppState, Depends(get_state)]


def ingest_source(
    state: State,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> SourceKey:
    if creds is None or not (creds.credentials.isascii() and creds.credentials.isprintable()):
        # Keys are ASCII: anything else is no key (and must not reach the key lookup).
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing API key", headers={"WWW-Authenticate": "Bearer"}
        )
    with state.ingest_pool.connection() as conn:
        key = verify(conn, creds.credentials)
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid or revoked API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if "ingest" not in key.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this key may not ingest")
    return key


IngestSource = Annotated[SourceKey, Depends(ingest_source)]
