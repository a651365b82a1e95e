"""Load test of the coach app: 20 concurrent coach sessions (locust, headless, bounded in
time, everything on 127.0.0.1) against the Hub-proxied app and the backend, as the demo
coach (or the bench coach) with their assigned members.

    .venv/bin/python bench/coach_load.py [--users 20] [--seconds 60] [--coach demo-coach]

Needs the local stack and the coach's account (`make demo` makes demo-coach; its password
is read from the stack's secrets file; without it, bench/coach_app.py's bench coach).
Prints locust's figures per request kind and the failures, writes
bench/results/coach_load.json."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from backend.governance import assignments
from backend.identity.hub_client import login_token
from backend.stack.context import StackContext

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--coach", default="demo-coach")
    ap.add_argument("--password-entry", default="hub_demo_coach")
    ap.add_argument("--think", default="2,8", help="seconds between a session's requests")
    args = ap.parse_args()
    console = Console()
    ctx = StackContext.from_env()
    password = ctx.secrets.get(args.password_entry)
    if password is None:
        # No demo yet (`make bench` without `make demo`): bench/coach_app.py's coach, made
        # by that benchmark (run just before this one).
        import coach_app  # bench/coach_app.py, beside this file

        args.coach, password = coach_app.COACH, coach_app.PASSWORD
        console.print(f"no demo coach: as {args.coach} (made by bench/coach_app.py)")
    with ctx.db.connect("backend") as conn:
        members = [str(a.member_id) for a in assignments.listing(conn, args.coach)]
    if not members:
        sys.exit(f"{args.coach} has no members: run `make demo` or bench/coach_app.py")
    token = login_token(ctx.hub.url, ctx.layout.ca_cert, args.coach, password, "load test")
    RESULTS.mkdir(exist_ok=True)
    prefix = RESULTS / "coach_load"
    env = {
        **os.environ,
        "COACH_LOAD_HUB": ctx.hub.url,
        "COACH_LOAD_BACKEND": ctx.backend_url,
        "COACH_LOAD_CA": str(ctx.layout.ca_cert),
        "COACH_LOAD_COACH": args.coach,
        "COACH_LOAD_PASSWORD": password,
        "COACH_LOAD_TOKEN": token,
        "COACH_LOAD_MEMBERS": ",".join(members),
        "COACH_LOAD_THINK": args.think,
    }
    locust = str(Path(sys.executable).parent / "locust")
    done = subprocess.run(
        [
            locust,
            "-f",
            str(HERE / "load" / "coach_app_locust.py"),
            "--headless",
            "--users",
            str(args.users),
            "--spawn-rate",
            str(max(1, args.users // 4)),
            "--run-time",
            f"{args.seconds}s",
            "--stop-timeout",
            "10",
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=args.seconds + 300,
        check=False,
    )
    with Path(f"{prefix}_stats.csv").open() as fh:
        stats = list(csv.DictReader(fh))
    table = Table(
        title=f"{args.users} concurrent coach sessions, {args.seconds} s, think {args.think} s"
        f" (locust); load average {os.getloadavg()[0]:.1f}",
        title_justify="left",
    )
    for col in ("request", "count", "failures", "p50 ms", "p95 ms", "max ms", "req/s"):
        table.add_column(col, justify="left" if col == "request" else "right")
    for row in stats:
        table.add_row(
            row["Name"],
            row["Request Count"],
            row["Failure Count"],
            row["50%"],
            row["95%"],
            f"{float(row['Max Response Time']):.0f}",
            f"{float(row['Requests/s']):.1f}",
        )
    console.print(table)
    (RESULTS / "coach_load.json").write_text(
        json.dumps(
            {
                "users": args.users,
                "seconds": args.seconds,
                "think_s": args.think,
                "load_average": os.getloadavg(),
                "stats": stats,
            },
            indent=2,
        )
    )
    if done.returncode != 0:
        console.print(done.stdout[-2000:], done.stderr[-2000:])
        sys.exit(done.returncode)


if __name__ == "__main__":
    main()
