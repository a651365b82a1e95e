"""The coach app as a service of the stack: in `rejuve status`, and holding no database
(or Redis, or key) credentials: neither its environment nor its one configuration file
carries any of the stack's other secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from backend.runtime import Runtime
from backend.stack.coach_server import CLIENT_SECRET, COOKIE_SECRET

REJUVE = str(Path(sys.executable).parent / "rejuve")


def _coach_status() -> dict[str, object]:
    out = subprocess.run(
        [REJUVE, "status", "--json"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    rows = {r["name"]: r for r in json.loads(out)}
    assert "coach" in rows, rows.keys()
    row: dict[str, object] = rows["coach"]
    return row


def test_rejuve_status_shows_the_coach_app(ctx: Runtime) -> None:
    row = _coach_status()
    assert row["state"] == "up"
    assert row["url"] == f"{ctx.hub.url}/services/coach/"


def test_the_app_holds_no_other_secret(ctx: Runtime) -> None:
    pid = _coach_status()["pid"]
    assert isinstance(pid, int)
    others = {
        name: value
        for name, value in ctx.secrets.items()
        if name not in (CLIENT_SECRET, COOKIE_SECRET) and len(value) >= 12
    }
    assert any(n.startswith("pg_") for n in others)
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    config = ctx.layout.home / "coach" / "coach.json"
    assert config.stat().st_mode & 0o077 == 0
    text = config.read_text()
    for name, value in others.items():
        assert value not in environ, f"the coach app's environment holds {name}"
        assert value not in text, f"the coach app's configuration holds {name}"
    assert "DATABASE_URL" not in environ and "REDIS_URL" not in environ
