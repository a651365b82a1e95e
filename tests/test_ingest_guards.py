"""What a source key cannot do any more (issue 8, items 2, 3, 6, 9, 12): store what the
refiner cannot refine, stall the refiner with poison or costly batches, write for members
it is not enrolled for, or reuse a batch id for other content. Against the running stack."""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from backend.api.api_keys import enrol
from backend.ingest.landing import NotEnrolled, land_bytes
from backend.refine import runner
from backend.refine.quality import latest
from backend.refine.reconcile import reconcile
from backend.runtime import Runtime
from backend.stack import supervisor
from backend.stack.context import StackContext
from tests.devices import enrolled_member, source_client


@pytest.fixture(scope="module")
def api(ctx: StackContext) -> Iterator[tuple[httpx.Client, str]]:
    with source_client(ctx, "guard") as found:
        yield found


def body(member: uuid.UUID, batch_id: str | None = None, **sample: object) -> dict[str, object]:
    return {
        "batch_id": batch_id or f"g-{uuid.uuid4()}",
        "member_id": str(member),
        "device": "test-watch",
        "samples": [
            {"code": "8867-4", "value": 61, "unit": "/min", "start": "2026-11-21T10:00:00Z"},
            {
                "code": "8867-4",
                "value": 62,
                "unit": "/min",
                "start": "2026-11-21T10:01:00Z",
                **sample,
            },
        ],
    }


def ledger(ctx: StackContext, batch_id: str, timeout: float = 20) -> tuple[object, ...]:
    deadline = time.monotonic() + timeout
    with ctx.db.connect("refiner", autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "select parsed, processed, status, error from processed.batch_ledger"
                " where batch_id = %s",
                (batch_id,),
            ).fetchone()
            if row:
                return tuple(row)
            time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} not refined within {timeout} s")


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        ('"device": "watch\\u0000"', ["body", "device"]),
        ('"unit": "/min\\u0000"', ["body", "samples", 1, "unit"]),
        ('"code": "8867-4\\u0000"', ["body", "samples", 1, "code"]),
        ('"qualifier": "\\u0000"', ["body", "samples", 1, "qualifier"]),
        ('"device": "\\ud800"', ["body"]),  # the JSON parser refuses it
        ('"value": NaN', ["body", "samples", 1, "value"]),
        ('"value": Infinity', ["body", "samples", 1, "value"]),
        ('"value": 1e400', ["body", "samples", 1, "value"]),
        ('"unit": "10*999/min"', ["body", "samples", 1, "unit"]),
        ('"unit": "no-such-unit"', ["body", "samples", 1, "unit"]),
        ('"start": "0001-01-01T00:00:00Z"', ["body", "samples", 1, "start"]),
        ('"start": "2999-01-01T00:00:00Z"', ["body", "samples", 1, "start"]),
    ],
    ids=[
        "nul-device",
        "nul-unit",
        "nul-code",
        "nul-qualifier",
        "lone-surrogate",
        "nan",
        "infinity",
        "1e400",
        "unit-overflow",
        "unit-unknown",
        "year-1",
        "year-2999",
    ],
)
def test_what_cannot_be_stored_is_refused_naming_the_field(
    api: tuple[httpx.Client, str], ctx: StackContext, raw: str, loc: list[object]
) -> None:
    client, source = api
    payload = body(enrolled_member(ctx, source), marker="MARK")
    text = json.dumps(payload).replace('"marker": "MARK"', raw)
    if raw.startswith('"device"'):
        text = json.dumps(payload).replace('"device": "test-watch"', raw)
        text = text.replace(', "marker": "MARK"', "")
    r = client.post(
        "/v1/ingest/batches", content=text.encode(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert loc in [d["loc"] for d in r.json()["detail"]], r.json()
    with ctx.db.connect("refiner") as conn:
        n = conn.execute(
            "select count(*) from raw.batches where client_batch_id = %s", (payload["batch_id"],)
        ).fetchone()
    assert n == (0,)


def test_a_source_writes_only_for_the_members_it_is_enrolled_for(
    api: tuple[httpx.Client, str], ctx: StackContext
) -> None:
    client, source = api
    other = enrolled_member(ctx)  # enrolled on the platform, not for this source
    unknown = uuid.uuid4()  # not enrolled at all
    for member in (other, unknown):
        r = client.post("/v1/ingest/batches", json=body(member))
        assert r.status_code == 403, r.text
        assert "member_id" in r.json()["detail"]
    with ctx.db.connect("owner") as conn:
        enrol(conn, source, [other])
    r = client.post("/v1/ingest/batches", json=body(other))
    assert r.status_code == 201, r.text
    # No data key was made for the unknown id, and nothing landed for it.
    with ctx.db.connect("refiner") as conn:
        n = conn.execute("select count(*) from raw.batches where member_id = %s", (unknown,))
        assert n.fetchone() == (0,)


def test_landing_refuses_a_member_that_is_not_enrolled(ctx: StackContext) -> None:
    with ctx.db.connect("ingest") as conn, pytest.raises(NotEnrolled, match="not enrolled"):
        land_bytes(
            conn,
            ctx.keystore(),
            body=b"{}",
            source="file:omh",
            fmt="omh",
            member_id=uuid.uuid4(),
            region="local",
        )


def test_same_batch_id_other_content_is_a_conflict(
    api: tuple[httpx.Client, str], ctx: StackContext
) -> None:
    client, source = api
    member = enrolled_member(ctx, source)
    first = body(member, "conflict-" + secrets.token_hex(4))
    assert client.post("/v1/ingest/batches", json=first).status_code == 201
    assert client.post("/v1/ingest/batches", json=first).status_code == 200  # replay
    changed = {**first, "samples": [first["samples"][0]]}  # type: ignore[index]
    r = client.post("/v1/ingest/batches", json=changed)
    assert r.status_code == 409, r.text
    assert "batch_id" in r.json()["detail"]


def _poison(ctx: StackContext, member: uuid.UUID, n: int) -> list[uuid.UUID]:
    """Batches the refiner cannot refine (a mapping no CSV can have): landed as an older
    path could, past the API's checks."""
    with ctx.db.connect("ingest") as conn:
        return [
            land_bytes(
                conn,
                ctx.keystore(),
                body=b"patient,loinc,value,unit,time\n",
                source="poison-test",
                fmt="csv-lab",
                member_id=member,
                region="local",
                client_batch_id=f"poison-{uuid.uuid4()}",
                parse_options={"delimiter": ";;"},
            ).batch_id
            for _ in range(n)
        ]


def test_poison_batches_are_dead_lettered_and_block_no_one(
    api: tuple[httpx.Client, str], ctx: StackContext
) -> None:
    """Before: a failing batch stayed pending and was retried every round, oldest first;
    100 of them starved every good batch. Now the good one is refined within seconds and
    each poison batch ends dead-lettered after refine_max_attempts tries."""
    client, source = api
    member = enrolled_member(ctx, source)
    poison = _poison(ctx, member, 120)
    r = client.post("/v1/ingest/batches", json=body(member))
    assert r.status_code == 201
    started = time.monotonic()
    assert ledger(ctx, r.json()["batch_id"], timeout=15)[:3] == (2, 2, "refined")
    good_took = time.monotonic() - started
    assert good_took < 10

    deadline = time.monotonic() + 90
    with ctx.db.connect("refiner", autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "select count(*) from processed.batch_ledger where batch_id = any(%s)"
                " and status = 'dead_letter'",
                (poison,),
            ).fetchone()
            if row == (len(poison),):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"poison batches not dead-lettered: {row}")
        line = reconcile(conn, batch=poison[0]).batches[0]
        assert not line.ok and line.status == "dead_letter" and line.attempts == 3
        assert "MappingError" in (line.error or "")
        quality = {q.batch_id: q for q in latest(conn, limit=1000)}
    assert quality[poison[0]].error and quality[poison[0]].completeness is None
    cli = subprocess.run(
        [sys.executable, "-m", "backend.cli.main", "reconcile", "--batch", str(poison[0])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 1 and "failed" in cli.stdout


def _export_zip(records: int, attribute: int = 0) -> bytes:
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z,
        z.open("apple_health_export/export.xml", "w") as f,
    ):
        f.write(b'<?xml version="1.0"?>\n<HealthData locale="en">\n')
        if attribute:
            f.write(b'<Record type="HKQuantityTypeIdentifierHeartRate" sourceName="')
            for _ in range(attribute):
                f.write(b"A" * (1 << 20))
            f.write(b'" unit="count/min" startDate="2024-03-02 07:15:00 +0100"')
            f.write(b' endDate="2024-03-02 07:15:00 +0100" value="61"/>\n')
        for i in range(records):
            f.write(
                b'<Record type="HKQuantityTypeIdentifierHeartRate" sourceName="W"'
                b' unit="count/min" startDate="2024-03-02 07:%02d:%02d +0100"'
                b' endDate="2024-03-02 07:%02d:%02d +0100" value="%d"/>\n'
                % (i // 60 % 60, i % 60, i // 60 % 60, i % 60, 50 + i % 100)
            )
        f.write(b"</HealthData>\n")
    return buf.getvalue()


def test_a_huge_attribute_is_refused_at_once(ctx: StackContext) -> None:
    """A 261 KB zip holding a 256 MiB attribute kept a worker parsing for hours."""
    member = enrolled_member(ctx)
    data = _export_zip(1, attribute=256)
    assert len(data) < 400_000
    batch = land_export(ctx, member, data)
    parsed, _, status, error = ledger(ctx, str(batch), timeout=20)
    assert (parsed, status) == (0, "unreadable")
    assert "longer than 1,048,576 bytes" in str(error)


@pytest.fixture
def refiner_stopped(stack: StackContext) -> Iterator[None]:
    supervisor.down(stack, ["refiner"])
    try:
        yield
    finally:
        supervisor.up(stack, ["refiner"])


@contextmanager
def refiner_with(time_limit: str, seconds_per_mib: str) -> Iterator[None]:
    """A refiner of one worker with these time limits, beside the stack's (stopped)."""
    env = {
        **os.environ,
        "REJUVE_REFINE_TIME_LIMIT_SECONDS": time_limit,
        "REJUVE_REFINE_SECONDS_PER_MIB": seconds_per_mib,
        "REJUVE_REFINER_WORKERS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli.main", "refiner-run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def land_export(ctx: Runtime, member: uuid.UUID, body: bytes) -> uuid.UUID:
    """An Apple Health export.zip (`_export_zip`), landed for `member`."""
    with ctx.db.connect("ingest") as conn:
        return land_bytes(
            conn,
            ctx.keystore(),
            body=body,
            source="file:apple-health",
            fmt="apple-health",
            member_id=member,
            region="local",
            file_name="export.zip",
        ).batch_id


def test_a_batch_over_the_time_limit_is_stopped_and_dead_lettered(
    ctx: StackContext, refiner_stopped: None
) -> None:
    member = enrolled_member(ctx)
    slow = land_export(ctx, member, _export_zip(150_000))
    with refiner_with(time_limit="1", seconds_per_mib="0"):
        _, _, status, error = ledger(ctx, str(slow), timeout=30)
        assert status == "dead_letter" and "time limit of 1 s exceeded" in str(error)
        # The one worker was replaced: the next batch is refined at once.
        with ctx.db.connect("ingest") as conn:
            good = land_bytes(
                conn,
                ctx.keystore(),
                body=json.dumps(body(member)).encode(),
                source="time-limit-test",
                fmt="device-batch",
                member_id=member,
                region="local",
            ).batch_id
        assert ledger(ctx, str(good), timeout=15)[:3] == (2, 2, "refined")


def test_a_large_batch_earns_time_for_its_size(ctx: StackContext, refiner_stopped: None) -> None:
    """The same export that the test above stops at 1 s is refined when each MiB it landed
    as earns time (REJUVE_REFINE_SECONDS_PER_MIB): a member-year of wearable data must not
    be dead-lettered for being large, while its cost stays bounded by its size."""
    batch = land_export(ctx, enrolled_member(ctx), _export_zip(150_000))
    with refiner_with(time_limit="1", seconds_per_mib="100"):  # ~1.2 MiB: ~125 s in all
        parsed, _, status, error = ledger(ctx, str(batch), timeout=120)
    assert (status, error) == ("refined", None)
    assert parsed == 150_000  # all of it read (the generated records repeat: duplicates)


def test_a_batch_time_limit_grows_with_its_size() -> None:
    assert runner.batch_time_limit(300, 20, 0) == 300
    assert runner.batch_time_limit(300, 20, 143 * runner.MIB) == 300 + 20 * 143
