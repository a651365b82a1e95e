"""How the CLI shows things: rich tables for people, JSON for programs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from backend.stack.service import ServiceStatus

# Wide enough off a terminal (CI logs, pipes) that addresses and paths are not cut.
console = Console(width=None if sys.stdout.isatty() else 160)
# Errors are one line, however long: never wrapped.
err = Console(stderr=True, soft_wrap=True)

_STATE_STYLE = {"up": "green", "external": "green", "degraded": "yellow", "down": "red"}


def services_table(rows: Sequence[ServiceStatus]) -> Table:
    table = Table(title="Rejuve local stack", title_justify="left")
    for col in ("service", "state", "address", "pid", "log"):
        table.add_column(col)
    for s in rows:
        style = _STATE_STYLE.get(s.state, "")
        table.add_row(s.name, f"[{style}]{s.state}[/]", s.url, str(s.pid or "-"), s.log or "-")
    return table


def print_json(data: object) -> None:
    console.print_json(json.dumps(data, default=str))
