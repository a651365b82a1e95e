"""Rate limits on the governed path, kept in Redis: one person's flood gets 429 with
Retry-After (each refusal audited), within the configured window, however many worker
processes serve it; someone else is not slowed down by it; requests without a token are
limited per client address; with Redis away, requests are refused (503), not let through."""

from __future__ import annotations

import asyncio
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest

from backend.api.governance_state import Rate, SharedRateLimiter
from backend.exceptions import ServiceDown
from backend.stack.context import StackContext
from tests.hub_people import Backend, hub_people


@pytest.fixture(scope="module")
def people(ctx: StackContext) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    with hub_people(ctx, {"flood": "researcher", "calm": "researcher"}) as p:
        yield p


def test_a_flood_is_limited_and_audited_and_others_are_not(
    ctx: StackContext, people: tuple[dict[str, str], dict[str, str]]
) -> None:
    names, tokens = people
    api = Backend(ctx)
    n = 150
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(lambda _: api.call("GET", "/v1/studies", tokens["flood"]), range(n))
            )
        elapsed = time.monotonic() - started
        calm = api.call("GET", "/v1/studies", tokens["calm"])
        limited = [r for r in answers if r.status_code == 429]
        ok = [r for r in answers if r.status_code == 200]
        assert len(ok) + len(limited) == n
        # The window: `burst` at once, then `rate` a second, counted across every worker.
        s = ctx.settings
        assert len(ok) <= s.rate_limit_burst + s.rate_limit_per_second * elapsed
        assert limited, f"{n} requests in {elapsed:.1f} s were not limited"
        assert all(r.headers["retry-after"] == "1" for r in limited)
        assert calm.status_code == 200
        audited = [api.audit_of(r) for r in limited[:5]]
        assert audited == [[(names["flood"], "denied", 429)]] * len(audited)
    finally:
        api.close()


@contextmanager
def anonymous_flood(
    ctx: StackContext, path: Callable[[int], str]
) -> Iterator[tuple[Backend, list[httpx.Response], float, Rate]]:
    """More anonymous requests from this address than its limit lets through, 16 at a
    time: (client, answers, seconds taken, the limit). The window passes afterwards, since
    other tests call anonymously from this address too."""
    api = Backend(ctx)
    s = ctx.settings
    anonymous = Rate(s.rate_limit_anonymous_per_second, s.rate_limit_anonymous_burst)
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(lambda i: api.call("GET", path(i), None), range(anonymous.amount + 60))
            )
        yield api, answers, time.monotonic() - started, anonymous
    finally:
        api.close()
        time.sleep(anonymous.seconds)


def test_unauthenticated_requests_are_limited_per_client_address(ctx: StackContext) -> None:
    # 2,925 anonymous requests in 12 s all reached the audit log before this limit.
    with anonymous_flood(ctx, lambda _: "/v1/studies") as (api, answers, elapsed, anonymous):
        limited = [r for r in answers if r.status_code == 429]
        assert {r.status_code for r in answers} <= {401, 429}
        assert limited, f"{len(answers)} anonymous requests in {elapsed:.1f} s were not limited"
        assert len(answers) - len(limited) <= anonymous.amount * (1 + elapsed // anonymous.seconds)
        assert api.audit_of(limited[0]) == [("anonymous", "denied", 429)]


def test_refusals_before_routing_count_against_the_anonymous_limit(ctx: StackContext) -> None:
    # A flood of requests to no endpoint was audited (one durable record each) but never
    # throttled: only routed requests counted against an address.
    with anonymous_flood(ctx, lambda i: f"/v1/no-such-endpoint-{i}") as (api, answers, _, _):
        limited = [r for r in answers if r.status_code == 429]
        assert {r.status_code for r in answers} <= {404, 429}
        assert limited, f"{len(answers)} anonymous requests to no endpoint were not limited"
        assert limited[0].headers.get("retry-after") == "1"
        assert api.audit_of(limited[0]) == [("anonymous", "denied", 429)]
        # the same address, now on a real route: already over its limit
        assert api.call("GET", "/v1/studies", None).status_code == 429


_WORKER = """
import asyncio, sys
from pathlib import Path
from backend.api.governance_state import Rate, SharedRateLimiter
url = sys.stdin.readline().strip()  # not in argv: it holds the Redis password
limiter = SharedRateLimiter.open(url, Path(sys.argv[1]), Rate(1, 30), Rate(1, 30))
async def main() -> int:
    return sum([await limiter.allow(sys.argv[2]) for _ in range(int(sys.argv[3]))])
print(asyncio.run(main()))
"""


def test_the_limit_is_shared_by_worker_processes(ctx: StackContext) -> None:
    # Two processes, as two backend workers (or machines) would be, each with its own
    # limiter: together they let through one window's worth, not one each.
    who = f"shared-{secrets.token_hex(4)}"
    # A 30 s window: both processes start (slowly, on a loaded machine) well within it.
    args = [str(ctx.redis.ca_file), who, "30"]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for w in workers:
        assert w.stdin is not None
        w.stdin.write(ctx.redis.url + "\n")
        w.stdin.flush()
    allowed = [int(w.communicate(timeout=60)[0]) for w in workers]
    assert sum(allowed) == Rate(1, 30).amount, allowed


def test_with_redis_away_requests_are_refused_not_let_through(ctx: StackContext) -> None:
    url = f"rediss://nobody:nothing@127.0.0.1:{_closed_port()}/0"
    limiter = SharedRateLimiter.open(url, ctx.redis.ca_file, Rate(5, 10), Rate(5, 10))
    with pytest.raises(ServiceDown, match="rate limit store"):
        asyncio.run(limiter.allow("someone"))
    with pytest.raises(ServiceDown):
        asyncio.run(limiter.allow_anonymous("127.0.0.1"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
