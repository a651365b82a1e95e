"""The Python environment people's notebook servers run in.

It lives under /opt/rejuve, readable by everyone, because the accounts notebooks run as
(backend/identity/accounts.py) cannot enter the checkout: a clone in `mktemp -d` is 0700
and the checkout's `.venv` points at an interpreter under /root. It is built from the
lock's `notebook` group with the system Python, plus the `workbench` package, and named
after a digest of what went into it, so a changed lock or client gives a new one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from backend.exceptions import SetupError

ROOT = Path("/opt/rejuve/notebook-runtime")
SYSTEM_PYTHON = Path("/usr/bin/python3")
_DONE = ".complete"


def _inputs(repo: Path) -> list[Path]:
    files = [repo / "uv.lock", repo / "pyproject.toml"]
    return files + sorted((repo / "workbench").rglob("*.py"))


def digest(repo: Path) -> str:
    h = hashlib.sha256()
    for f in _inputs(repo):
        h.update(str(f.relative_to(repo)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _uv() -> str:
    found = shutil.which("uv") or "/opt/rejuve/tools/bin/uv"
    if not Path(found).exists():
        raise SetupError("uv is not installed", "run `make setup`")
    return found


def _run(argv: list[str], cwd: Path | None = None) -> str:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SetupError("building the notebook runtime failed", done.stderr.strip()[-2000:])
    return done.stdout


def _readable_by_all(top: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(top):
        for d in dirnames:
            p = Path(dirpath) / d
            p.chmod(p.stat().st_mode | 0o555)
        for f in filenames:
            p = Path(dirpath) / f
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | 0o444)
    top.chmod(0o755)


# JupyterLab settings every notebook user starts with (users may still change them): no
# "would you like to get notified about official Jupyter news?" pop-up on a first start,
# and no fetching news from the internet, which a hospital network would not reach anyway;
# a notebook opens with its kernel started, not behind a "Select Kernel" dialog (JupyterLab
# 4's default asks every time a notebook without a running kernel is opened).
LAB_OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension:tracker": {"autoStartDefaultKernel": True},
}


def location(repo: Path, root: Path = ROOT) -> Path:
    """Where the runtime for this checkout's lock lives (built or not)."""
    return root / digest(repo)


def _write_lab_overrides(target: Path) -> None:
    settings = target / "share" / "jupyter" / "lab" / "settings"
    settings.mkdir(mode=0o755, parents=True, exist_ok=True)
    overrides = settings / "overrides.json"
    text = json.dumps(LAB_OVERRIDES, indent=2) + "\n"
    if not overrides.exists() or overrides.read_text() != text:
        overrides.write_text(text)
    overrides.chmod(0o644)


def ensure(repo: Path, root: Path = ROOT, python: Path = SYSTEM_PYTHON) -> Path:
    """The runtime's directory, built if missing (~20 s from uv's cache). Its
    `bin/jupyterhub-singleuser` is what the Hub spawns."""
    target = location(repo, root)
    if (target / _DONE).exists():
        # Also for a runtime built before these settings existed.
        _write_lab_overrides(target)
        return target
    if not python.exists():
        raise SetupError(f"{python} is missing", "apt-get install python3")
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        # Two `rejuve up`s (or a test's Hub) may build at once: one builds, one waits.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _DONE).exists():
            return target
        # Scripts carry absolute shebangs, so it is built in place, never moved.
        shutil.rmtree(target, ignore_errors=True)
        uv = _uv()
        _run([uv, "venv", "--quiet", "--python", str(python), str(target)])
        requirements = target / "requirements.txt"
        _run(
            [
                uv,
                "export",
                "--frozen",
                "--only-group",
                "notebook",
                "--no-emit-project",
                "--no-header",
                "--quiet",
                "--output-file",
                str(requirements),
            ],
            cwd=repo,
        )
        py = str(target / "bin" / "python")
        # Copies, not hardlinks into root's cache: the runtime must not depend on /root.
        _run(
            [uv, "pip", "sync", "--quiet", "--link-mode", "copy", "--python", py, str(requirements)]
        )
        purelib = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
        shutil.copytree(
            repo / "workbench",
            Path(purelib.strip()) / "workbench",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        _run([py, "-m", "compileall", "-q", str(Path(purelib.strip()) / "workbench")])
        _write_lab_overrides(target)
        _readable_by_all(target)
        (target / _DONE).write_text("")
        (target / _DONE).chmod(0o644)
    return target
