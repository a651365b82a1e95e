"""The governed request path: identity -> rate limit -> Casbin -> object rules in SQL ->
audit. Every request a person makes, allowed or refused, leaves one audit record.

A route declares its guard in its signature:

    ticket: Annotated[Ticket, Guard("studies/:study/dataset", "read", action="dataset.extract")]

The resource is the policy's pattern; the guard fills `:study` from the path. The route
runs only with an authenticated, allowed viewer (`ticket.viewer` is never None), and the
guard writes the request's one audit record after the route returned or raised and before
the response is sent: a record that cannot be written turns the answer into a 500 that
releases nothing."""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from backend.api.governance_state import GovernanceState, Identity
from backend.api.request_guard import TOO_MANY
from backend.exceptions import ServiceDown, UserError, http_status
from backend.governance import audit
from backend.logs import get as get_logger
from backend.query.viewer import Viewer

log = get_logger(__name__)

# Answers every governed route may give besides its own; routers declare them once.
GOVERNED_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, expired or invalid token"},
    403: {"description": "the caller's roles do not allow this"},
    404: {"description": "no such object, or not the caller's to see"},
    413: {"description": "request body over the configured limit"},
    414: {"description": "query string over the configured limit"},
    429: {"description": "too many requests from this identity"},
    503: {"description": "the identity provider or the audit trail is unavailable"},
}

# Declares the Hub token as the OpenAPI security scheme of every guarded route (so the
# docs' "Authorize" works); the guard reads the header itself (`token` or `Bearer`).
_hub_token = HTTPBearer(
    auto_error=False,
    scheme_name="HubToken",
    description="your JupyterHub API token (sent as `Authorization: Bearer <token>`)",
)
HubToken = Annotated[HTTPAuthorizationCredentials | None, Depends(_hub_token)]


def get_gov(request: Request) -> GovernanceState:
    gov: GovernanceState = request.app.state.governance
    return gov


Gov = Annotated[GovernanceState, Depends(get_gov)]


# -- audit records ------------------------------------------------------------------------

_MAX_TEXT = 500
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def storable(value: Any, depth: int = 0) -> Any:
    """`value` as something jsonb (and text columns) can always hold: no NUL, no lone
    surrogates, no NaN or infinities (PostgreSQL refuses all three, and a request carries
    whatever its client sends), strings capped, containers bounded. The audit writer's own
    cleaning stays; this makes the guard's records storable whatever it is given."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # "inf", "-inf", "nan"
    if isinstance(value, str):
        text = _LONE_SURROGATE.sub("\ufffd", value.replace("\x00", "\ufffd"))
        return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"
    if depth > 8:
        return "…"
    if isinstance(value, Mapping):
        return {storable(str(k)): storable(v, depth + 1) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple | set | frozenset):
        return [storable(v, depth + 1) for v in list(value)[:50]]
    if isinstance(value, uuid.UUID):
        return str(value)
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return storable(isoformat())
    return storable(str(value))


def _text(value: str | None) -> str | None:
    return None if value is None else storable(value)


def _write(
    gov: GovernanceState,
    viewer: Viewer | None,
    *,
    client: str | None,
    action: str,
    resource: str,
    outcome: str,
    status_code: int,
    request_id: uuid.UUID,
    started: float,
    purpose: str | None = None,
    study: str | None = None,
    params: Mapping[str, Any] | None = None,
    row_count: int | None = None,
) -> None:
    gov.audit.write(
        audit.AuditEvent(
            actor=storable(viewer.user) if viewer else "anonymous",
            role=",".join(sorted(viewer.roles)) if viewer else None,
            purpose=_text(purpose),
            study=_text(study),
            action=storable(action or "unknown"),
            resource=storable(resource or "unknown"),
            outcome=outcome,
            params=storable(dict(params or {})),
            row_count=row_count,
            status=status_code,
            latency_ms=(time.perf_counter() - started) * 1000,
            client=_text(client),
            request_id=request_id,
        )
    )


# -- identity -----------------------------------------------------------------------------


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: token|Bearer <t>` header. A header that is not plain
    printable ASCII holds no token (tokens are ASCII; the Hub client would fail to send it
    on): the caller is anonymous, not a 500."""
    scheme, _, value = (authorization or "").partition(" ")
    value = value.strip()
    if scheme.lower() not in ("token", "bearer") or not value:
        return None
    if not (value.isascii() and value.isprintable()):
        return None
    return value


async def _identity(gov: GovernanceState, token: str | None) -> Identity | None:
    if token is None:
        return None
    known, identity = gov.validator.remembered(token)
    if known:
        return identity  # the usual case: no I/O, no thread
    try:
        return await run_in_threadpool(gov.validator.validate, token)
    except ServiceDown:
        # The identity provider gave no answer: not the caller's fault, not a 401.
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "identity provider unavailable"
        ) from None


async def _within_limit(allow: Callable[[str], Awaitable[bool]], who: str) -> bool:
    try:
        return await allow(who)
    except ServiceDown:
        # Limits that cannot be checked refuse (fail closed): an unlimited path is what
        # an attacker would wait for.
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "rate limits unavailable",
            headers={"Retry-After": "5"},
        ) from None


async def anonymous_allowed(gov: GovernanceState, client: str | None) -> bool:
    """The one call site of the per-client-address limit on unauthenticated requests."""
    return await _within_limit(gov.limiter.allow_anonymous, client or "unknown")


# -- the guard ----------------------------------------------------------------------------


@dataclass
class Ticket:
    """One allowed request in flight: who asks, and what its audit record will say. The
    route fills in what only it knows (row counts, params, a more precise action)."""

    viewer: Viewer
    action: str
    resource: str
    purpose: str | None = None
    study: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    row_count: int | None = None
    request_id: uuid.UUID = field(default_factory=uuid.uuid4)


class _Unfilled(dict[str, Any]):
    """Path parameters for `str.format_map`; a name the path lacks stays as written."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


_PARAM = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")


class RouteGuard:
    """The dependency behind `Guard(...)`: authenticate, rate-limit, authorise, yield the
    ticket, audit the outcome. `resource` is a policy pattern (`members/:member/timeline`)
    whose `:names` are the route's path parameters; `purpose` may name them as `{study}`."""

    def __init__(
        self,
        resource: str,
        act: Literal["read", "write"],
        *,
        action: str,
        purpose: str | None = None,
    ) -> None:
        self.resource = resource
        self.act = act
        self.action = action
        self.purpose = purpose
        self.path_params = tuple(_PARAM.findall(resource))

    def concrete(self, path_params: Mapping[str, Any]) -> str:
        return _PARAM.sub(lambda m: str(path_params.get(m.group(1), m.group(0))), self.resource)

    async def __call__(
        self, request: Request, response: Response, gov: Gov, _declared: HubToken
    ) -> AsyncIterator[Ticket]:
        """Runs on the event loop: what it needs before the route is in memory (the token's
        cached answer, the policy's memo) or asynchronous (the rate limit); only a token
        the validator has not seen lately, and the audit record, take a thread."""
        started = time.perf_counter()
        path_params = request.path_params
        resource = self.concrete(path_params)
        study = path_params.get("study")
        purpose = self.purpose.format_map(_Unfilled(path_params)) if self.purpose else None
        client = request.client.host if request.client else None
        request_id = getattr(request.state, "request_id", None)
        if not isinstance(request_id, uuid.UUID):
            request_id = uuid.uuid4()
        # This request's record is written here, whatever happens: the app's error
        # handlers must not write a second one.
        request.state.audited = True
        viewer: Viewer | None = None
        ticket: Ticket | None = None

        async def record(outcome: str, status_code: int) -> None:
            try:
                await run_in_threadpool(write, outcome, status_code)
            except Exception as e:
                # No answer without its record: whatever the route produced is dropped.
                log.error("audit record not written", error=type(e).__name__)
                raise HTTPException(
                    status.HTTP_503_SERVICE_UNAVAILABLE,
                    "the audit trail is unavailable: nothing was released",
                ) from None

        def write(outcome: str, status_code: int) -> None:
            who: Viewer | None
            if ticket is not None:
                who, action, asked = ticket.viewer, ticket.action, (ticket.purpose, ticket.study)
                params, rows = ticket.params, ticket.row_count
            else:
                # Refused before the route ran: what the request asked for, as sent.
                who, action, asked = viewer, self.action, (purpose, study)
                params, rows = _query_params(request), None
            _write(
                gov,
                who,
                client=client,
                action=action,
                resource=resource,
                outcome=outcome,
                status_code=status_code,
                request_id=request_id,
                started=started,
                purpose=asked[0],
                study=asked[1],
                params=params,
                row_count=rows,
            )

        try:
            token = bearer_token(request.headers.get("authorization"))
            identity = await _identity(gov, token)
            if identity is None:
                if not await anonymous_allowed(gov, client):
                    raise HTTPException(
                        status.HTTP_429_TOO_MANY_REQUESTS,
                        TOO_MANY,
                        headers={"Retry-After": "1"},
                    )
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    "missing, expired or invalid token",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            viewer = Viewer(identity.name, identity.roles, gov.region)
            if not await _within_limit(gov.limiter.allow, identity.name):
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    TOO_MANY,
                    headers={"Retry-After": "1"},
                )
            if not gov.policy.allowed(
                identity.name, identity.roles, gov.region, resource, self.act
            ):
                raise HTTPException(status.HTTP_403_FORBIDDEN, "not allowed")
        except HTTPException as e:
            await record("denied" if e.status_code in (401, 403, 429) else "error", e.status_code)
            raise
        except Exception:
            await record("error", 500)
            raise
        ticket = Ticket(viewer, self.action, resource, purpose, study, request_id=request_id)
        try:
            yield ticket
        except RequestValidationError:
            # The route's own parameters were invalid (checked after the guard, so that a
            # stranger learns nothing of what is valid): audited as the app's handler
            # audits input it refuses before any route.
            ticket.action, ticket.purpose, ticket.study = "request.refused", None, None
            ticket.params = {"method": request.method, "reason": "invalid input"}
            await record("denied", 422)
            raise
        except HTTPException as e:
            # 404 and 409: the object rules or the object's state refused it.
            await record(
                "denied" if e.status_code in (401, 403, 404, 409, 429) else "error", e.status_code
            )
            raise
        except UserError as e:
            code = http_status(e)
            await record("denied" if code in (403, 404, 409) else "error", code)
            raise
        except Exception:
            await record("error", 500)
            raise
        else:
            await record("allowed", _status_sent(request, response))


def _query_params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        params[key] = values[0] if len(values) == 1 else values
    return params


def _status_sent(request: Request, response: Response) -> int:
    """The status the response goes out with: the one the route set on its `Response`
    parameter, else the route's declared status code."""
    if response.status_code:
        return int(response.status_code)
    route = request.scope.get("route")
    declared = getattr(route, "status_code", None)
    return int(declared) if declared else 200


def Guard(
    resource: str,
    act: Literal["read", "write"],
    *,
    action: str,
    purpose: str | None = None,
) -> DependsParam:
    """The guard of one route, for its signature: `Annotated[Ticket, Guard(...)]`. Scoped
    to the function, so the audit record is written before the response is sent."""
    guard = RouteGuard(resource, act, action=action, purpose=purpose)
    depends: DependsParam = Depends(guard, scope="function")
    return depends


def guard_of(call: object) -> RouteGuard | None:
    return call if isinstance(call, RouteGuard) else None


async def record_refusal(
    gov: GovernanceState,
    *,
    method: str,
    path: str,
    authorization: str | None,
    client: str | None,
    request_id: uuid.UUID | None,
    status_code: int,
    reason: str,
) -> int:
    """Audit a request refused before any route ran (too large, malformed, no such
    endpoint): every request leaves a record, not only those a route saw. The caller is
    named if their token is good; a Hub that does not answer leaves them anonymous.
    An anonymous refusal counts against the caller's address like any anonymous request
    (else a flood of 404s would go unthrottled): over the limit it becomes a 429.
    Returns the status to answer with."""
    try:
        identity = await _identity(gov, bearer_token(authorization))
    except HTTPException:
        identity = None
    if identity is None and not await anonymous_allowed(gov, client):
        status_code, reason = status.HTTP_429_TOO_MANY_REQUESTS, TOO_MANY
    await run_in_threadpool(
        _write,
        gov,
        Viewer(identity.name, identity.roles, gov.region) if identity else None,
        client=client,
        action="request.refused",
        resource=path.removeprefix("/v1/") or "/",
        outcome="denied" if status_code < 500 else "error",
        status_code=status_code,
        request_id=request_id or uuid.uuid4(),
        started=time.perf_counter(),
        params={"method": method, "reason": reason},
    )
    return status_code
