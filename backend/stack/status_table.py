"""The local stack's services as a table, for `rejuve up | down | status` and the demo.

Here rather than in the CLI so that the demo, which the CLI runs, need not import the
CLI back (import cycle)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from backend.stack.service import ServiceStatus

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
