"""How the CLI shows things: rich tables for people, JSON for programs."""

from __future__ import annotations

import json
import sys

from rich.console import Console

from backend.stack.status_table import services_table

__all__ = ["console", "err", "print_json", "services_table"]

# Wide enough off a terminal (CI logs, pipes) that addresses and paths are not cut.
console = Console(width=None if sys.stdout.isatty() else 160)
# Errors are one line, however long: never wrapped.
err = Console(stderr=True, soft_wrap=True)


def print_json(data: object) -> None:
    console.print_json(json.dumps(data, default=str))
