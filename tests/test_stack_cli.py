"""`rejuve up/down/status/psql` on a second stack of its own (own home, own ports), so the
shared test stack is never disturbed."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

from backend.stack.context import StackContext
from tests.conftest import create_scratch_database, drop_scratch_database

REJUVE = str(Path(sys.executable).parent / "rejuve")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def stack_env() -> Iterator[dict[str, str]]:
    home = Path("/var/lib/rejuve/stacks") / f"test-{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "REJUVE_HOME": str(home),
        "REJUVE_PG_PORT": str(_free_port()),
        "REJUVE_REDIS_PORT": str(_free_port()),
        "REJUVE_PREFECT_PORT": str(_free_port()),
    }
    try:
        yield env
    finally:
        subprocess.run([REJUVE, "down"], env=env, capture_output=True, check=False, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


def rejuve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REJUVE, *args], env=env, capture_output=True, text=True, check=False, timeout=300
    )


ALL_DOWN = {
    name: ("down", None)
    for name in (
        "timescaledb",
        "redis",
        "prefect",
        "refiner",
        "rollups",
        "backend",
        "coach",
        "jupyterhub",
        "flows",
    )
}


def states(env: dict[str, str]) -> dict[str, tuple[str, int | None]]:
    res = rejuve(env, "status", "--json")
    assert res.returncode == 0, res.stderr
    return {s["name"]: (s["state"], s["pid"]) for s in json.loads(res.stdout)}


def test_lifecycle(stack_env: dict[str, str]) -> None:
    assert states(stack_env) == ALL_DOWN

    first = rejuve(stack_env, "up", "timescaledb", "redis")
    assert first.returncode == 0, first.stderr + first.stdout
    after_first = states(stack_env)
    assert after_first["timescaledb"][0] == "up"
    assert after_first["redis"][0] == "up"
    assert after_first["prefect"] == ("down", None)
    assert after_first["refiner"] == ("down", None)
    assert after_first["backend"] == ("down", None)

    # Twice is harmless: same processes, migrations already at head, exit 0.
    second = rejuve(stack_env, "up", "timescaledb", "redis")
    assert second.returncode == 0, second.stderr + second.stdout
    assert states(stack_env) == after_first

    # psql over verified TLS, as the query role: it sees the processed zone and not raw.
    ok = rejuve(
        stack_env, "psql", "--role", "query", "-c", "select count(*) from processed.observations"
    )
    assert ok.returncode == 0, ok.stderr
    assert "0" in ok.stdout
    refused = rejuve(stack_env, "psql", "--role", "query", "-c", "select * from raw.records")
    assert refused.returncode != 0
    assert "permission denied" in refused.stderr

    # A service that dies is started again by supervisord, and `status` counts it; the
    # others are left alone.
    redis_pid = after_first["redis"][1]
    assert redis_pid is not None
    os.kill(redis_pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = rows(stack_env)["redis"]
        if row["state"] == "up" and row["pid"] not in (None, redis_pid):
            break
        time.sleep(0.5)
    assert row["state"] == "up" and row["restarts"] == 1, row
    assert row["pid"] not in (None, redis_pid)
    assert states(stack_env)["timescaledb"] == after_first["timescaledb"]
    # Only root may talk to the supervisor: its socket and configuration are private.
    home = Path(stack_env["REJUVE_HOME"])
    sock = home / "run" / "supervisord.sock"
    conf = home / "supervisor" / "supervisord.conf"
    assert sock.stat().st_mode & 0o777 == 0o700 and sock.stat().st_uid == 0
    assert conf.stat().st_mode & 0o777 == 0o600
    assert (home / "run").stat().st_mode & 0o077 == 0

    down = rejuve(stack_env, "down")
    assert down.returncode == 0, down.stderr
    assert states(stack_env) == ALL_DOWN
    # `down` stops the supervisor too: nothing of this stack is left running.
    assert not (Path(stack_env["REJUVE_HOME"]) / "run" / "supervisord.sock").exists()


def rows(env: dict[str, str]) -> dict[str, dict[str, object]]:
    res = rejuve(env, "status", "--json")
    assert res.returncode == 0, res.stderr
    return {s["name"]: s for s in json.loads(res.stdout)}


def test_unknown_service_is_one_clear_line(stack_env: dict[str, str]) -> None:
    res = rejuve(stack_env, "status", "nosuch")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: unknown service nosuch; known: backend, coach, flows, jupyterhub, prefect,"
        " redis, refiner, rollups, timescaledb"
    ]


def test_existing_servers_are_used_not_provisioned(ctx: StackContext) -> None:
    """REJUVE_DATABASE_URL / REJUVE_REDIS_URL: nothing local is started; migrations run there."""
    access = create_scratch_database(ctx)
    home = Path("/var/lib/rejuve/stacks") / f"test-ext-{secrets.token_hex(4)}"
    owner_url = make_conninfo(access.conninfo("owner"))
    env = {
        **os.environ,
        "REJUVE_HOME": str(home),
        "REJUVE_DATABASE_URL": owner_url,
        "REJUVE_REDIS_URL": ctx.redis.url,
        "REJUVE_CA_FILE": str(ctx.layout.ca_cert),
        "REJUVE_PREFECT_PORT": str(_free_port()),
    }
    try:
        res = rejuve(env, "up", "timescaledb", "redis")
        assert res.returncode == 0, res.stderr + res.stdout
        assert states(env) == {
            **ALL_DOWN,
            "timescaledb": ("external", None),
            "redis": ("external", None),
        }
        assert not (home / "timescaledb").exists()
        assert not (home / "redis").exists()
        # the migrations ran on the existing server, and its app roles can log in there
        app_passwords = json.loads((home / "secrets.json").read_text())
        external = access.for_database(
            access.dbname, {**access.passwords, "query": app_passwords["pg_query"]}
        )
        with external.connect("query") as conn:
            assert conn.execute("select count(*) from processed.observations").fetchone() == (0,)
    finally:
        rejuve(env, "down")
        drop_scratch_database(ctx, access)
        shutil.rmtree(home, ignore_errors=True)


def test_external_database_url_must_name_the_owner(ctx: StackContext) -> None:
    env = {
        **os.environ,
        "REJUVE_HOME": f"/var/lib/rejuve/stacks/test-bad-{secrets.token_hex(4)}",
        "REJUVE_DATABASE_URL": "postgresql://someone@localhost/rejuve?sslrootcert=/x",
    }
    try:
        res = rejuve(env, "status")
        assert res.returncode == 3
        assert "must use the role 'rejuve_owner', not 'someone'" in res.stderr
    finally:
        shutil.rmtree(env["REJUVE_HOME"], ignore_errors=True)
