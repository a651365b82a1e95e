"""What every request passes before routing: it gets a request id (the audit record's, sent
back in `X-Request-ID`), and a body or query string over the configured size is refused
before anything parses it.

A plain ASGI middleware rather than a route dependency: FastAPI reads and parses a body
before any dependency runs, so a limit checked there would come after the memory is spent.
Ingestion has its own, larger limit (`max_batch_bytes`) and is left to it."""

from __future__ import annotations

import json
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


@dataclass(frozen=True)
class RequestLimits:
    max_body_bytes: int = 64 * 1024
    max_query_bytes: int = 8 * 1024
    exempt_prefixes: tuple[str, ...] = ("/v1/ingest/",)


# Told of every refusal (scope, status, detail), to audit it.
OnRefusal = Callable[[Scope, int, str], Awaitable[None]]


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

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), id_header]}
            await send(message)

        if str(scope.get("path", "")).startswith(self.limits.exempt_prefixes):
            await self.app(scope, receive, send_with_id)
            return
        refusal = self._refusal(scope)
        if refusal is None and _header(scope, b"content-length") is None:
            # No declared length (chunked): read up to the limit here, then replay it.
            receive, refusal = await self._buffered(receive)
        if refusal is not None:
            if self.on_refusal is not None:
                await self.on_refusal(scope, *refusal)
            await _respond(send_with_id, *refusal)
            return
        await self.app(scope, receive, send_with_id)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        limits = self.limits
        if len(scope.get("query_string", b"")) > limits.max_query_bytes:
            return 414, f"the query string is longer than {limits.max_query_bytes:,} bytes"
        declared = _header(scope, b"content-length")
        if declared is not None and (
            not declared.isdigit() or int(declared) > limits.max_body_bytes
        ):
            return 413, f"the request body is larger than {limits.max_body_bytes:,} bytes"
        return None

    async def _buffered(self, receive: Receive) -> tuple[Receive, tuple[int, str] | None]:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away: hand the app what came, it will see the disconnect.
                first = message
                break
            body += message.get("body", b"")
            if len(body) > self.limits.max_body_bytes:
                limit = self.limits.max_body_bytes
                return receive, (413, f"the request body is larger than {limit:,} bytes")
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": bytes(body), "more_body": False}
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        return replay, None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1").strip()
    return None


async def _respond(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is never read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
