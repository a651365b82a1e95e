"""How `rejuve` answers a person who typed something wrong, and how fast it shows its help.

None of these needs the stack: they run with `pytest -m "not stack"`."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

REJUVE = str(Path(sys.executable).parent / "rejuve")


def _rejuve(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REJUVE, *args], stdin=stdin, capture_output=True, text=True, check=False, timeout=120
    )


def test_an_unknown_command_is_a_usage_error() -> None:
    res = _rejuve("list")
    assert res.returncode == 2
    assert "No such command 'list'" in res.stderr
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr


def test_an_unknown_option_is_a_usage_error() -> None:
    res = _rejuve("members", "list", "--nope")
    assert res.returncode == 2
    assert "No such option: --nope" in res.stderr
    assert "internal error" not in res.stderr


def test_users_add_off_a_terminal_says_to_pipe_the_password(tmp_path: Path) -> None:
    # Before: typer's prompt read EOF, a traceback and exit 130.
    res = _rejuve("users", "add", "someone", "--role", "member")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: no terminal to ask for the password: pipe it in with --password-stdin"
    ]


def test_import_of_the_cli_stays_light() -> None:
    """`rejuve --help` loads the command modules only: none of the platform's heavy
    dependencies (the database driver, Redis, settings, the API, Prefect)."""
    probe = (
        "import sys, backend.cli.main as m; "
        "heavy = ['psycopg', 'redis', 'pydantic_settings', 'fastapi', 'prefect', 'structlog',"
        " 'backend.settings', 'backend.runtime', 'backend.stack.context']; "
        "print(','.join(h for h in heavy if h in sys.modules))"
    )
    res = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert res.stdout.strip() == ""


@pytest.mark.parametrize("args", [("--help",), ("members", "--help"), ("psql", "--help")])
def test_help_is_quick(args: tuple[str, ...]) -> None:
    # CPU time, not wall time: on a shared 2-core machine the wall clock measures the other
    # processes. A generous bound (importing the whole platform took ~1.4 s of CPU); the
    # figures are measured with hyperfine and written in the README, not asserted here.
    best = min(_cpu_seconds(args) for _ in range(2))
    assert best < 2.0


def _cpu_seconds(args: tuple[str, ...]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = _rejuve(*args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert res.returncode == 0, res.stderr
    assert "Usage" in res.stdout
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_a_domain_error_is_one_line_with_its_exit_status(tmp_path: Path) -> None:
    """A set-up problem (here: a database URL naming the wrong role) ends with status 3."""
    env = {
        **os.environ,
        "REJUVE_HOME": str(tmp_path),
        "REJUVE_DATABASE_URL": "postgresql://someone@localhost/rejuve?sslrootcert=/x",
    }
    res = subprocess.run(
        [REJUVE, "members", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 3
    assert res.stderr.splitlines()[0] == (
        "error: REJUVE_DATABASE_URL must use the role 'rejuve_owner', not 'someone'"
    )
    assert list(tmp_path.iterdir()) == []  # and nothing was made on the way
