"""Reading the platform's generated secrets (one JSON file, mode 0600): never creating them.

The local stack generates the file when it is first brought up
(`backend.stack.secrets_store.load_or_create`); everything else only reads it."""

from __future__ import annotations

import json
from pathlib import Path

from backend.exceptions import SetupError


def read(path: Path) -> dict[str, str]:
    """The secrets in `path`, or none if there is no file (then only what the settings
    carry, e.g. REJUVE_DATABASE_URL, can be used; a missing one is named when needed)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except PermissionError:
        raise SetupError(
            f"cannot read the secrets file {path}", "run as the stack's owner"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise SetupError(f"the secrets file {path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise SetupError(f"the secrets file {path} is not a JSON object")
    return {str(k): str(v) for k, v in data.items()}
