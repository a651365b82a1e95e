"""The runtime only reads: with the servers given by URL and an empty home, commands work
and nothing is created, neither in the home nor in the running stack's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

from backend.exceptions import SetupError
from backend.runtime import Runtime
from backend.settings import Settings

REJUVE = str(Path(sys.executable).parent / "rejuve")


def test_building_the_runtime_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runtime = Runtime.from_settings(Settings(home=home))
    assert runtime.db.host == "127.0.0.1"
    assert not home.exists()
    # What the runtime cannot find it names; it does not make a new one.
    with pytest.raises(SetupError, match="no master key"):
        runtime.kms()
    with pytest.raises(SetupError, match="no key store"):
        runtime.keystore()
    with pytest.raises(SetupError, match="no 'redis' secret"):
        _ = runtime.redis
    assert not home.exists()


def test_a_read_only_command_with_external_urls_touches_no_file(
    ctx: Runtime, tmp_path: Path
) -> None:
    home = tmp_path / "empty-home"
    home.mkdir()
    # The running stack's own files change all the time (its database, logs, pid files):
    # what a command could have provisioned is the home's entries and the secrets file.
    stack_entries = sorted(p.name for p in ctx.layout.home.iterdir())
    secrets_stat = ctx.layout.secrets_file.stat()
    env = {
        **os.environ,
        "REJUVE_HOME": str(home),
        "REJUVE_DATABASE_URL": make_conninfo(ctx.db.conninfo("owner")),
        "REJUVE_REDIS_URL": ctx.redis.url,
        "REJUVE_CA_FILE": str(ctx.layout.ca_cert),
        # The app roles' passwords, as a mounted secret would give them: read, not written.
        "REJUVE_SECRETS_FILE": str(ctx.layout.secrets_file),
    }
    for args in (["members", "list", "--json"], ["assignments", "list", "--json"]):
        res = subprocess.run(
            [REJUVE, *args], env=env, capture_output=True, text=True, check=False, timeout=120
        )
        assert res.returncode == 0, res.stderr
        assert isinstance(json.loads(res.stdout), list)
    assert list(home.iterdir()) == []
    assert sorted(p.name for p in ctx.layout.home.iterdir()) == stack_entries
    after = ctx.layout.secrets_file.stat()
    assert (after.st_mtime_ns, after.st_mode) == (secrets_stat.st_mtime_ns, secrets_stat.st_mode)
