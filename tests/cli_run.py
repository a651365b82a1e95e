"""Running the `rejuve` CLI from a test as an operator would, in a subprocess (tests that
ingest files through it: up to 5 minutes a command)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REJUVE = str(Path(sys.executable).parent / "rejuve")


def rejuve(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([REJUVE, *args], capture_output=True, text=True, timeout=timeout)


def rejuve_ok(*args: str) -> str:
    """Its stdout, once it exited 0 (else the test fails with what it said)."""
    res = rejuve(*args)
    assert res.returncode == 0, res.stderr + res.stdout
    return res.stdout
