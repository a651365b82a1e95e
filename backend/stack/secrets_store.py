"""Generated secrets of the local stack: one JSON file, mode 0600, outside the repository."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

# Every credential the local stack needs. Database role names are derived elsewhere.
SECRET_NAMES = (
    "pg_super",
    "pg_owner",
    "pg_ingest",
    "pg_refiner",
    "pg_query",
    "pg_backend",
    "pg_feast",
    "pg_features",
    "pg_prefect",
    "prefect_api",
    "redis",
    "hub_backend",
    # The coach app: its Hub service token (also its OAuth client secret), its cookie secret.
    "hub_coach",
    "coach_cookie",
)


def _new_password() -> str:
    # A leading letter keeps the value from ever parsing as a JSON number (Feast parses
    # its Redis connection string values with json.loads); token_urlsafe has no commas.
    return "r" + secrets.token_urlsafe(30)


def load_or_create(path: Path, names: tuple[str, ...] = SECRET_NAMES) -> dict[str, str]:
    """Return all secrets, generating (and persisting) any that are missing."""
    existing: dict[str, str] = {}
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        existing = json.loads(path.read_text())
    missing = [n for n in names if n not in existing]
    if missing:
        existing.update({n: _new_password() for n in missing})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(existing, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    return existing
