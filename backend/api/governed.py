"""The governed request path: identity -> rate limit -> Casbin -> object rules in SQL ->
audit. Every request a person makes, allowed or refused, leaves one audit record."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status

from backend.api.governance_state import GovernanceState
from backend.exceptions import ServiceDown
from backend.governance import audit
from backend.query.viewer import Viewer

# Answers every governed route may give besides its own; routers declare them once.
GOVERNED_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, expired or invalid token"},
    403: {"description": "the caller's roles do not allow this"},
    404: {"description": "no such object, or not the caller's to see"},
    413: {"description": "request body over the configured limit"},
    414: {"description": "query string over the configured limit"},
    429: {"description": "too many requests from this identity"},
}


def get_gov(request: Request) -> GovernanceState:
    gov: GovernanceState = request.app.state.governance
    return gov


Gov = Annotated[GovernanceState, Depends(get_gov)]


@dataclass
class Ticket:
    """One governed request in flight: what it is, and what to write in the audit log."""

    gov: GovernanceState
    viewer: Viewer | None
    client: str | None
    action: str = ""
    resource: str = ""
    purpose: str | None = None
    study: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    row_count: int | None = None
    status: int = 200  # a route that creates something says 201
    request_id: uuid.UUID = field(default_factory=uuid.uuid4)
    started: float = field(default_factory=time.perf_counter)

    def write(self, outcome: str, status_code: int) -> None:
        event = audit.AuditEvent(
            actor=self.viewer.user if self.viewer else "anonymous",
            role=",".join(sorted(self.viewer.roles)) if self.viewer else None,
            purpose=self.purpose,
            study=self.study,
            action=self.action or "unknown",
            resource=self.resource or "unknown",
            outcome=outcome,
            params=self.params,
            row_count=self.row_count,
            status=status_code,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            client=self.client,
            request_id=self.request_id,
        )
        self.gov.audit.write(event)


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value:
        return value.strip()
    return None


def _within_limit(allow: Callable[[str], bool], who: str) -> bool:
    try:
        return allow(who)
    except ServiceDown:
        # Limits that cannot be checked refuse (fail closed): an unlimited path is what
        # an attacker would wait for.
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "rate limits unavailable",
            headers={"Retry-After": "5"},
        ) from None


@contextmanager
def governed(
    request: Request,
    gov: GovernanceState,
    *,
    action: str,
    resource: str,
    act: str = "read",
    purpose: str | None = None,
    study: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Iterator[Ticket]:
    """Authenticate, rate-limit and authorise; yield a ticket to fill in (row counts);
    audit the outcome whatever happens."""
    client = request.client.host if request.client else None
    ticket = Ticket(gov, None, client, action, resource, purpose, study, dict(params or {}))
    # Whatever happens below writes this request's record: the app's error handlers must
    # not write a second one.
    request.state.audited = True
    # The id the caller sees in X-Request-ID (set by RequestGuard), so a person can point
    # an auditor at the very record of their request.
    request_id = getattr(request.state, "request_id", None)
    if isinstance(request_id, uuid.UUID):
        ticket.request_id = request_id
    try:
        token = _token(request)
        try:
            identity = gov.validator.validate(token) if token else None
        except ServiceDown:
            # The identity provider gave no answer: not the caller's fault, not a 401.
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "identity provider unavailable"
            ) from None
        if identity is None:
            # Without an identity, the client's address is what a flood is counted by.
            if not _within_limit(gov.limiter.allow_anonymous, client or "unknown"):
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    "too many requests",
                    headers={"Retry-After": "1"},
                )
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing, expired or invalid token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        ticket.viewer = Viewer(identity.name, identity.roles, gov.region)
        if not _within_limit(gov.limiter.allow, identity.name):
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS, "too many requests", headers={"Retry-After": "1"}
            )
        if not gov.policy.allowed(identity.name, identity.roles, gov.region, resource, act):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "not allowed")
        yield ticket
    except HTTPException as e:
        # 409: a change the rules refuse (the policy's lockout guard, a record resolved).
        refused = e.status_code in (401, 403, 404, 409, 429)
        ticket.write("denied" if refused else "error", e.status_code)
        raise
    except Exception:
        ticket.write("error", 500)
        raise
    else:
        ticket.write("allowed", ticket.status)


def record_refusal(
    gov: GovernanceState,
    *,
    method: str,
    path: str,
    authorization: str | None,
    client: str | None,
    request_id: uuid.UUID | None,
    status_code: int,
    reason: str,
) -> None:
    """Audit a request refused before any route ran (too large, malformed, no such
    endpoint): every request leaves a record, not only those a route saw. The caller is
    named if their token is good; a Hub that does not answer leaves them anonymous."""
    scheme, _, value = (authorization or "").partition(" ")
    identity = None
    if scheme.lower() in ("token", "bearer") and value.strip():
        try:
            identity = gov.validator.validate(value.strip())
        except ServiceDown:
            identity = None
    ticket = Ticket(
        gov,
        Viewer(identity.name, identity.roles, gov.region) if identity else None,
        client,
        action="request.refused",
        resource=path.removeprefix("/v1/") or "/",
        params={"method": method, "reason": reason},
    )
    if request_id is not None:
        ticket.request_id = request_id
    ticket.write("denied" if status_code < 500 else "error", status_code)
