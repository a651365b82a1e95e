"""Per-identity rate limits on the governed path: one person's flood gets 429 with
Retry-After (each refusal audited), within the configured bucket; someone else is not
slowed down by it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

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
        # The bucket: `burst` at once, then `rate` a second (plus a request in flight).
        s = ctx.settings
        assert len(ok) <= s.rate_limit_burst + s.rate_limit_per_second * elapsed + 1
        assert limited, f"{n} requests in {elapsed:.1f} s were not limited"
        assert all(r.headers["retry-after"] == "1" for r in limited)
        assert calm.status_code == 200
        audited = [api.audit_of(r) for r in limited[:5]]
        assert audited == [[(names["flood"], "denied", 429)]] * len(audited)
    finally:
        api.close()
