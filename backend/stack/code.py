"""Digests of the code a service runs, so that `rejuve up` restarts a service whose code
was edited since it started (a test run then never talks to stale code).

Each supervised program carries its digest in its environment (REJUVE_CODE_DIGEST): a
changed digest is a changed program section, which supervisord re-creates on `up`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from backend.settings import REPO_ROOT

# What our Python services import from the checkout: the platform, the flows, the Hub's
# configuration, and the lock that fixes every library's version.
_TREES = ("backend", "flows", "deploy/jupyterhub")
_LOCK = ("uv.lock", "pyproject.toml")


def _digest(files: Iterable[Path], repo: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        try:
            data = f.read_bytes()
        except FileNotFoundError:
            continue  # deleted between listing and reading: the next `up` sees the rest
        h.update(str(f.relative_to(repo)).encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:16]


def lock_digest(repo: Path = REPO_ROOT) -> str:
    return _digest((repo / name for name in _LOCK), repo)


def code_digest(repo: Path = REPO_ROOT) -> str:
    """Sources of our services plus the lock (about 10 ms for the whole checkout)."""
    files = [f for tree in _TREES for f in sorted((repo / tree).rglob("*.py"))]
    return _digest([*files, *(repo / name for name in _LOCK)], repo)
