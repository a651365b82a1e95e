"""`rejuve rollups` and `rejuve retention` on the running stack, as an operator uses them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from backend.runtime import Runtime

REJUVE = str(Path(sys.executable).parent / "rejuve")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REJUVE, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, **env},
    )


def test_rollups_status_rebuild_and_refresh(ctx: Runtime) -> None:
    status = _run("rollups", "status")
    assert status.returncode == 0, status.stderr
    assert "queued keys:" in status.stdout and "member-days:" in status.stdout
    bad = _run("rollups", "rebuild", "--member", "not-a-member")
    assert bad.returncode == 2 and "not a member id" in bad.stderr + bad.stdout
    refresh = _run("rollups", "refresh")
    assert refresh.returncode == 0 and "refreshed" in refresh.stdout


def test_retention_below_the_floor_is_refused_in_one_line(ctx: Runtime) -> None:
    shown = _run("retention", "show")
    assert shown.returncode == 0 and "processed.observations" in shown.stdout
    refused = _run(
        "retention",
        "apply",
        REJUVE_RETENTION_PROCESSED_DAYS="5",
        REJUVE_RETENTION_MINIMUM_DAYS="30",
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "below the minimum of 30 days" in refused.stdout + refused.stderr
    kept = _run("retention", "apply")
    assert kept.returncode == 0 and "nothing dropped" in kept.stdout
