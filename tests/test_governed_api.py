"""The governed path over real HTTPS: without an identity the Hub vouches for, every query
is refused with 401, and every refusal is in the audit trail, chained."""

from __future__ import annotations

import secrets
import ssl

import httpx
import pytest

from backend.governance import audit
from backend.stack.context import StackContext
from tests.hub_people import hub_people

RANGE = {"start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"}


@pytest.mark.parametrize(
    "auth",
    [None, "token forged-token", "Bearer rk_00_api-key-is-not-a-user"],
    ids=["anonymous", "forged", "api-key"],
)
def test_refused_and_audited(ctx: StackContext, auth: str | None) -> None:
    study = f"s-{secrets.token_hex(4)}"
    tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
    headers = {"Authorization": auth} if auth else {}
    with httpx.Client(base_url=ctx.backend_url, verify=tls, headers=headers) as client:
        r = client.get(f"/v1/studies/{study}/dataset", params=RANGE)
        t = client.get("/v1/members/self/timeline", params={**RANGE, "bucket": "day"})
    assert (r.status_code, t.status_code) == (401, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    assert "Traceback" not in r.text and "select" not in r.text.lower()
    with ctx.db.connect("backend") as conn:
        rows = conn.execute(
            "select actor, action, outcome, status, params->>'start', client"
            " from governance.audit_log where resource = %s",
            (f"studies/{study}/dataset",),
        ).fetchall()
        assert audit.verify(conn).ok
    # Refused before the route ran: the record holds the parameters as sent.
    assert rows == [("anonymous", "dataset.extract", "denied", 401, RANGE["start"], "127.0.0.1")]


def test_bad_parameters_are_422_with_the_field_after_authentication(ctx: StackContext) -> None:
    """The guard runs first: a stranger gets 401 and learns nothing of what is valid; a
    person with a token gets 422 naming the field."""
    tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
    bad = {"start": "yesterday", "end": RANGE["end"]}
    with (
        hub_people(ctx, {"mia": "member"}) as (_, tokens),
        httpx.Client(base_url=ctx.backend_url, verify=tls) as client,
    ):
        stranger = client.get("/v1/members/self/timeline", params=bad)
        r = client.get(
            "/v1/members/self/timeline",
            params=bad,
            headers={"Authorization": f"token {tokens['mia']}"},
        )
    assert stranger.status_code == 401
    assert r.status_code == 422
    assert ["query", "start"] in [d["loc"] for d in r.json()["detail"]]
