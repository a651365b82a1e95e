"""What every request passes before routing: it gets a request id (the audit record's, sent
back in `X-Request-ID` on every response, 500s included), a body or query string over the
configured size is refused before anything parses it, a JSON body with a lone UTF-16
surrogate escape (which no database column can hold) is refused with 422, and an error no
handler caught becomes a plain 500 with one log line (its type, never a traceback: it may
hold request data).

A plain ASGI middleware rather than a route dependency: FastAPI reads and parses a body
before any dependency runs, so a limit checked there would come after the memory is spent.
Ingestion has its own, larger limit (`max_batch_bytes`) and is left to it."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "X-Request-ID"
TOO_MANY = "too many requests"  # a 429's detail, whoever answers it
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class RequestLimits:
    max_body_bytes: int = 64 * 1024
    max_query_bytes: int = 8 * 1024
    exempt_prefixes: tuple[str, ...] = ("/v1/ingest/",)
    # Routes whose body is data, not criteria: a training set's entity rows (pseudonym and
    # time, ~70 bytes each; the route takes up to 200,000).
    large_body_suffixes: tuple[str, ...] = ("/training-set",)
    max_large_body_bytes: int = 16 * 1024 * 1024

    def max_body(self, path: str) -> int:
        if path.endswith(self.large_body_suffixes):
            return self.max_large_body_bytes
        return self.max_body_bytes


# Told of every refusal (scope, status, detail), to audit it; answers the status to send
# (a throttled caller's refusal becomes a 429).
OnRefusal = Callable[[Scope, int, str], Awaitable[int]]


class RequestGuard:
    def __init__(
        self, app: ASGIApp, limits: RequestLimits, on_refusal: OnRefusal | None = None
    ) -> None:
        self.app = app
        self.limits = limits
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4()
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (REQUEST_ID_HEADER.lower().encode(), str(request_id).encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), id_header]}
            await send(message)

        try:
            await self._guarded(scope, receive, send_with_id)
        except Exception as e:
            # The last line of defence, here rather than in Starlette's ServerErrorMiddleware
            # (outside this one): the 500 still carries the request id, and the log gets
            # one line instead of a traceback full of request data.
            from backend.logs import get as get_logger

            get_logger(__name__).error(
                "unhandled error", path=str(scope.get("path", ""))[:200], error=type(e).__name__
            )
            if not started:
                await _respond(send_with_id, 500, "internal error")

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope.get("path", "")).startswith(self.limits.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None and (_header(scope, b"content-length") is None or _json_body(scope)):
            # No declared length (chunked): read up to the limit here, then replay it. A
            # JSON body (bounded by the limit) is read here too, to look at its strings.
            receive, refusal = await self._buffered(
                receive, self.limits.max_body(str(scope.get("path", ""))), _json_body(scope)
            )
        if refusal is not None:
            if self.on_refusal is not None:
                answer = await self.on_refusal(scope, *refusal)
                if answer != refusal[0]:
                    refusal = (answer, TOO_MANY)
            await _respond(send, *refusal)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        limits = self.limits
        if len(scope.get("query_string", b"")) > limits.max_query_bytes:
            return 414, f"the query string is longer than {limits.max_query_bytes:,} bytes"
        declared = _header(scope, b"content-length")
        most = limits.max_body(str(scope.get("path", "")))
        if declared is not None and (not declared.isdigit() or int(declared) > most):
            return 413, f"the request body is larger than {most:,} bytes"
        return None

    async def _buffered(
        self, receive: Receive, limit: int, check_json: bool = False
    ) -> tuple[Receive, tuple[int, str] | None]:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away: hand the app what came, it will see the disconnect.
                first = message
                break
            body += message.get("body", b"")
            if len(body) > limit:
                return receive, (413, f"the request body is larger than {limit:,} bytes")
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": bytes(body), "more_body": False}
                if check_json and (where := _lone_surrogate(bytes(body))) is not None:
                    return receive, (422, f"{where}: a lone UTF-16 surrogate (\\ud800-\\udfff)")
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        return replay, None


def _json_body(scope: Scope) -> bool:
    if scope.get("method") not in _BODY_METHODS:
        return False
    media = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _lone_surrogate(body: bytes) -> str | None:
    """Where (a dotted path in the JSON document) a string holds a lone surrogate, if one
    does. Only escapes (`\\ud800`) can carry one: UTF-8 cannot. Malformed JSON is left for
    the route's parser to refuse with its own message."""
    if b"\\u" not in body:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    stack: list[tuple[str, object]] = [("body", doc)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if _LONE_SURROGATE.search(value):
                return where
        elif isinstance(value, dict):
            for k, v in value.items():
                if _LONE_SURROGATE.search(k):
                    return where
                stack.append((f"{where}.{k}", v))
        elif isinstance(value, list):
            stack.extend((f"{where}.{i}", v) for i, v in enumerate(value))
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1").strip()
    return None


async def _respond(send: Send, status: int, detail: str) -> None:
    # 422s have the shape of every other validation error (a list naming the input).
    shaped: object = (
        [{"loc": ["body"], "msg": detail, "type": "value_error"}] if status == 422 else detail
    )
    body = json.dumps({"detail": shaped}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is never read: the connection cannot be reused.
                (b"connection", b"close"),
                # As every other 429 of the backend says.
                *([(b"retry-after", b"1")] if status == 429 else []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
