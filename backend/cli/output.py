"""How the CLI shows things: rich tables for people, JSON for programs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from backend.stack.service import ServiceStatus

# Wide enough off a terminal (CI logs, pipes) that addresses and paths are not cut.
console = Console(width=None if sys.stdout.isatty() else 160)
# Errors are one line, however long: never wrapped.
err = Console(stderr=True, soft_wrap=True)

_STATE_STYLE = {"up": "green", "external": "green", "degraded": "yellow", "down": "red"}


def services_table(rows: Sequence[ServiceStatus]) -> Table:
    table = Table(title="Rejuve local stack", title_justify="left")
    for col in ("service", "state", "address", "pid", "restarts", "log"):
        table.add_column(col)
    for s in rows:
        style = _STATE_STYLE.get(s.state, "")
        state = f"[{style}]{s.state}[/]" + (f" ({s.detail})" if s.detail else "")
        # Restarts supervisord made after the service died (since the stack came up).
        restarts = "-" if s.restarts is None else str(s.restarts)
        table.add_row(s.name, state, s.url, str(s.pid or "-"), restarts, s.log or "-")
    logins = [
        f"{s.name.capitalize()} UI {s.url}: log in by typing [bold]{s.login}[/] into its one field"
        for s in rows
        if s.login and s.state == "up"
    ]
    if logins:
        table.caption = "\n".join(logins)
        table.caption_justify = "left"
    return table


def print_json(data: object) -> None:
    console.print_json(json.dumps(data, default=str))
