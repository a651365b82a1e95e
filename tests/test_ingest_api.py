"""The ingestion API over real HTTPS: what it accepts, what it refuses and how, and that an
acknowledgement means the batch is durable (a request killed mid-way can be resent)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from backend.api.api_keys import register, revoke
from backend.stack.context import StackContext
from tests.devices import enrolled_member, source_client

REJUVE = [sys.executable, "-m", "backend.cli.main"]


def member(ctx: StackContext, source: str | None) -> uuid.UUID:
    """A newly enrolled member, and the source enrolled for it (as an operator would)."""
    return enrolled_member(ctx, *([source] if source is not None else []))


@pytest.fixture(scope="module")
def api(ctx: StackContext) -> Iterator[tuple[httpx.Client, str]]:
    with source_client(ctx, "test") as found:
        yield found


def batch(batch_id: str, member: uuid.UUID, n: int = 3, **extra: object) -> dict[str, object]:
    return {
        "batch_id": batch_id,
        "member_id": str(member),
        "device": "test-watch",
        "samples": [
            {
                "code": "8867-4",
                "value": 60 + i % 100,
                "unit": "/min",
                "start": f"2026-11-21T10:{i % 60:02d}:{i // 60 % 60:02d}Z",
            }
            for i in range(n)
        ],
        **extra,
    }


def wait_refined(ctx: StackContext, batch_id: str, timeout: float = 20) -> tuple[int, ...]:
    deadline = time.monotonic() + timeout
    with ctx.db.connect("refiner", autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "select parsed, processed, quarantined, duplicate"
                " from processed.batch_ledger where batch_id = %s",
                (batch_id,),
            ).fetchone()
            if row:
                return tuple(row)
            time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} not refined within {timeout} s")


def test_accepted_batch_is_refined_within_seconds(
    api: tuple[httpx.Client, str], ctx: StackContext
) -> None:
    client, source = api
    started = time.monotonic()
    r = client.post(
        "/v1/ingest/batches", json=batch(f"ok-{uuid.uuid4()}", member(ctx, source), n=20)
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["samples"] == 20 and body["replayed"] is False
    assert wait_refined(ctx, body["batch_id"]) == (20, 20, 0, 0)
    assert time.monotonic() - started < 5


def test_resending_a_batch_id_is_safe(api: tuple[httpx.Client, str], ctx: StackContext) -> None:
    client, source = api
    payload = batch(f"again-{uuid.uuid4()}", member(ctx, source))
    first = client.post("/v1/ingest/batches", json=payload)
    second = client.post("/v1/ingest/batches", json=payload)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["batch_id"] == second.json()["batch_id"]
    assert second.json()["replayed"] is True
    with ctx.db.connect("refiner") as conn:
        n = conn.execute(
            "select count(*) from raw.batches where source = %s and client_batch_id = %s",
            (source, payload["batch_id"]),
        ).fetchone()
    assert n == (1,)


@pytest.mark.parametrize(
    ("mutate", "loc"),
    [
        (lambda b: b["samples"][1].update(value="sixty"), ["body", "samples", 1, "value"]),
        (lambda b: b["samples"][0].pop("unit"), ["body", "samples", 0, "unit"]),
        (
            lambda b: b["samples"][2].update(start="2026-11-21T10:00:00"),
            ["body", "samples", 2, "start"],
        ),  # no time zone
        (lambda b: b.update(member_id="not-a-uuid"), ["body", "member_id"]),
        (lambda b: b.update(samples=[]), ["body", "samples"]),
        (lambda b: b.update(extra_field=1), ["body", "extra_field"]),
        (lambda b: b.update(batch_id="has spaces"), ["body", "batch_id"]),
    ],
    ids=["value", "unit", "naive-time", "member", "empty", "unknown-field", "batch-id"],
)
def test_malformed_batch_says_what_and_where(
    api: tuple[httpx.Client, str], ctx: StackContext, mutate: object, loc: list[object]
) -> None:
    client, source = api
    payload = batch(f"bad-{uuid.uuid4()}", member(ctx, source))
    mutate(payload)  # type: ignore[operator]
    r = client.post("/v1/ingest/batches", json=payload)
    assert r.status_code == 422
    assert loc in [d["loc"] for d in r.json()["detail"]]


def test_refusals(api: tuple[httpx.Client, str], ctx: StackContext) -> None:
    client, _ = api
    payload = batch(f"r-{uuid.uuid4()}", uuid.uuid4())
    tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
    anonymous = httpx.post(f"{ctx.backend_url}/v1/ingest/batches", json=payload, verify=tls)
    forged = httpx.post(
        f"{ctx.backend_url}/v1/ingest/batches",
        json=payload,
        verify=tls,
        headers={"Authorization": "Bearer rk_00000000_forged"},
    )
    assert (anonymous.status_code, forged.status_code) == (401, 401)
    not_json = client.post(
        "/v1/ingest/batches", content=b"a,b\n1,2\n", headers={"content-type": "text/csv"}
    )
    assert not_json.status_code == 415
    broken = client.post(
        "/v1/ingest/batches", content=b'{"batch_id": ', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    huge = client.post(
        "/v1/ingest/batches",
        content=b" " * (9 * 1024 * 1024),
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413
    assert "limit" in huge.json()["detail"]
    # none of these landed anything
    with ctx.db.connect("refiner") as conn:
        n = conn.execute(
            "select count(*) from raw.batches where client_batch_id = %s", (payload["batch_id"],)
        ).fetchone()
    assert n == (0,)


def test_revoked_key_is_refused(ctx: StackContext) -> None:
    name = f"test-rev-{secrets.token_hex(4)}"
    with ctx.db.connect("owner") as conn:
        key = register(conn, name)
        revoke(conn, name)
    r = httpx.post(
        f"{ctx.backend_url}/v1/ingest/batches",
        json=batch("x", uuid.uuid4()),
        headers={"Authorization": f"Bearer {key}"},
        verify=ssl.create_default_context(cafile=str(ctx.layout.ca_cert)),
    )
    assert r.status_code == 401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_killed_mid_request_nothing_lands_and_resend_is_safe(
    api: tuple[httpx.Client, str], ctx: StackContext
) -> None:
    """kill -9 the API while a batch is half sent: no acknowledgement, nothing landed;
    the client resends to a restarted API and the batch lands exactly once."""
    client, source = api
    port = _free_port()
    env = {**os.environ, "REJUVE_BACKEND_PORT": str(port)}

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [*REJUVE, "backend-run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
        for _ in range(200):
            try:
                if httpx.get(f"https://127.0.0.1:{port}/healthz", verify=tls).status_code == 200:
                    return proc
            except httpx.HTTPError:
                time.sleep(0.1)
        proc.kill()
        raise AssertionError("backend did not start")

    payload = json.dumps(batch(f"kill-{uuid.uuid4()}", member(ctx, source), n=500)).encode()
    key = client.headers["Authorization"]
    proc = start()
    try:
        tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            tls.wrap_socket(raw, server_hostname="127.0.0.1") as s,
        ):
            s.sendall(
                b"POST /v1/ingest/batches HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nAuthorization: " + key.encode() + b"\r\n"
                b"Content-Length: "
                + str(len(payload)).encode()
                + b"\r\n\r\n"
                + payload[: len(payload) // 2]
            )
            time.sleep(0.3)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            s.settimeout(5)
            try:
                answer = s.recv(1024)
            except (ConnectionError, ssl.SSLError, TimeoutError):
                answer = b""
        assert answer == b""  # no acknowledgement
        batch_id = json.loads(payload)["batch_id"]
        with ctx.db.connect("refiner") as conn:
            n = conn.execute(
                "select count(*) from raw.batches where client_batch_id = %s", (batch_id,)
            ).fetchone()
        assert n == (0,)

        proc = start()
        tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
        with httpx.Client(verify=tls, headers={"Authorization": key}) as c:
            url = f"https://127.0.0.1:{port}/v1/ingest/batches"
            h = {"content-type": "application/json"}
            first = c.post(url, content=payload, headers=h)
            again = c.post(url, content=payload, headers=h)
        assert (first.status_code, again.status_code) == (201, 200)
        assert wait_refined(ctx, first.json()["batch_id"]) == (500, 500, 0, 0)
        with ctx.db.connect("refiner") as conn:
            n = conn.execute(
                "select count(*) from raw.batches where client_batch_id = %s and source = %s",
                (batch_id, source),
            ).fetchone()
        assert n == (1,)
    finally:
        proc.kill()
        proc.wait()
