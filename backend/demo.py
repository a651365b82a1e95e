"""The demo job: the stack up, a few sample payloads landed in raw, where everything runs."""

from __future__ import annotations

import json
import uuid

from rich.console import Console
from rich.table import Table

from backend.cli.output import services_table
from backend.stack import supervisor
from backend.stack.context import StackContext
from backend.zones import raw

# Fixed ids keep the demo's output comparable between runs.
_DEMO_MEMBERS = [uuid.UUID(int=0xDE110 + i) for i in range(3)]


def sample_payloads(region: str) -> list[raw.Payload]:
    out = []
    for i, member in enumerate(_DEMO_MEMBERS):
        batch = {
            "device": "demo-watch",
            "samples": [
                {
                    "type": "heart_rate",
                    "value": 60 + i + k,
                    "unit": "count/min",
                    "time": f"2026-11-25T08:{k:02d}:00+01:00",
                }
                for k in range(5)
            ],
        }
        out.append(
            raw.Payload(
                "demo-device", "application/json", json.dumps(batch).encode(), region, member
            )
        )
    return out


def run_demo(ctx: StackContext, console: Console) -> None:
    with console.status("starting the local stack") as spinner:
        rows = supervisor.up(ctx, progress=lambda m: spinner.update(m))
    with ctx.db.connect("ingest") as conn:
        ids = raw.land(conn, sample_payloads(ctx.settings.region))
    with ctx.db.connect("refiner") as conn:
        total = conn.execute("select count(*) from raw.records").fetchone()
    summary = Table(title="Raw zone", title_justify="left")
    summary.add_column("landed now", justify="right")
    summary.add_column("raw records in total", justify="right")
    summary.add_row(str(len(ids)), str(total[0] if total else 0))
    console.print(summary)
    console.print(services_table(rows))
    console.print(
        f"Prefect UI: [bold]{ctx.prefect.ui_url}[/] (certificate from the local CA "
        f"{ctx.layout.ca_cert})"
    )
    console.print("Stop everything with [bold]make down[/] or [bold].venv/bin/rejuve down[/].")
