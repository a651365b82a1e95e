"""Coach app benchmark, in Debian's Chromium through the Hub's proxy, as a logged-in coach:

- the triage list of 200 members: from navigation to all 200 rows in the page (p50/p95);
- a member page with 90 days of minute-level heart rate (129,600 readings, plus steps,
  HRV and sleep): first render, from navigation to the four charts drawn with the
  90-day (daily) data; then zooms (presets cycling 7 days, 1 day, 1 hour, 30 days,
  6 hours, 90 days): from the click to the charts redrawn with the new range's data.

Targets (issue 10): triage p95 < 1 s; member page first render < 1.5 s; zoom p95 < 300 ms.

    .venv/bin/python bench/coach_app.py [--members 200] [--rounds 20]

Needs the local stack (`make up`). The bench's coach and members are made once and kept
between runs (names start with `bench-coach`). Prints a table, writes
bench/results/coach_app.json with the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

from backend.governance import assignments
from backend.identity import hub_auth
from backend.stack.context import StackContext
from tests.browser import launch
from tests.coach_app.data import coached_members
from tests.seed import wait_rolled_up

COACH = "bench-coach"
HEAVY = "bench-minute-hr"  # the source of the 90-day member's readings
PASSWORD = "bench coach password"  # noqa: S105  (a throwaway account on a local stack)
APP = "/services/coach/"
RESULTS = Path(__file__).resolve().parent / "results"


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20)[-1] if len(xs) >= 2 else xs[0]


def ensure_population(ctx: StackContext, members: int) -> tuple[int, uuid.UUID]:
    """The bench coach with `members` members: one with 90 days of minute-level heart rate,
    the others 30 days (hourly heart rate), a tenth of them ending in an episode; made
    once. Returns how many are assigned and the 90-day member."""
    if hub_auth.lookup(ctx.hub.user_store, COACH) is None:
        hub_auth.add_user(ctx.hub.user_store, COACH, PASSWORD, ["coach"], rounds=4)
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    end += dt.timedelta(hours=1)
    with ctx.db.connect("owner") as conn:
        row = conn.execute(
            "select member_id from processed.observations where source = %s limit 1", (HEAVY,)
        ).fetchone()
    if row is None:
        heavy = coached_members(ctx, COACH, 1, days=90, end=end, hr_every=1, source=HEAVY)[0]
        wait_rolled_up(ctx, [heavy], timeout=1800)
    else:
        heavy = row[0]
    with ctx.db.connect("backend") as conn:
        have = len(assignments.listing(conn, COACH))
    if members > have:
        made = coached_members(
            ctx, COACH, members - have, days=30, end=end, hr_every=60, episodes=members // 10
        )
        wait_rolled_up(ctx, made, timeout=1800)
    return max(have, members), heavy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    console = Console()
    ctx = StackContext.from_env()
    with console.status("the bench coach's members (made once)"):
        assigned, heavy = ensure_population(ctx, args.members)
    load_before = os.getloadavg()

    from playwright.sync_api import sync_playwright

    triage: list[float] = []
    first: list[float] = []
    zooms: list[float] = []
    with sync_playwright() as pw:
        browser = launch(pw, ctx.layout.ca_cert)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.set_default_timeout(120_000)
        page.goto(f"{ctx.hub.url}/hub/login?next={APP}")
        page.fill("#username_input", COACH)
        page.fill("#password_input", PASSWORD)
        page.click("#login_submit")
        page.wait_for_selector("tr.triage-row")
        rows = page.locator("tr.triage-row")
        for i in range(args.rounds + 1):
            t = time.perf_counter()
            page.goto(f"{ctx.hub.url}{APP}")
            rows.nth(assigned - 1).wait_for(state="attached")
            if i:  # the first load warms the app's and the backend's caches
                triage.append(time.perf_counter() - t)
        assert rows.count() == assigned, rows.count()
        presets = ["7 days", "1 day", "1 hour", "30 days", "6 hours", "90 days"]
        for i in range(max(3, args.rounds // 4) + 1):
            t = time.perf_counter()
            page.goto(f"{ctx.hub.url}{APP}member?member={heavy}")
            page.locator(".resolution[data-seq='1']").wait_for()
            page.locator("canvas").nth(3).wait_for(state="attached")
            if i:
                first.append(time.perf_counter() - t)
        for i in range(args.rounds):
            seq = i + 2
            t = time.perf_counter()
            page.get_by_role("button", name=presets[i % len(presets)], exact=True).click()
            page.locator(f".resolution[data-seq='{seq}']").wait_for()
            zooms.append(time.perf_counter() - t)
        page.screenshot(path=str(RESULTS.parent / "results" / "coach_app-member.png"))
        browser.close()
    load_after = os.getloadavg()

    figures = {
        "triage_members": assigned,
        "triage_p50_s": statistics.median(triage),
        "triage_p95_s": p95(triage),
        "member_first_render_p50_s": statistics.median(first),
        "member_first_render_max_s": max(first),
        "zoom_p50_s": statistics.median(zooms),
        "zoom_p95_s": p95(zooms),
        "minute_hr_days": 90,
        "rounds": args.rounds,
        "load_before": load_before,
        "load_after": load_after,
        "machine": platform.node(),
        "cores": os.cpu_count(),
        "at": dt.datetime.now(dt.UTC).isoformat(),
    }
    table = Table(title="Coach app in Chromium (through the Hub's proxy)", title_justify="left")
    for col in ("what", "p50", "p95 / max", "target"):
        table.add_column(col, justify="left" if col == "what" else "right")
    table.add_row(
        f"triage list, {assigned} members",
        f"{figures['triage_p50_s'] * 1000:.0f} ms",
        f"{figures['triage_p95_s'] * 1000:.0f} ms (p95)",
        "p95 < 1000 ms",
    )
    table.add_row(
        "member page first render (90 d of minute HR)",
        f"{figures['member_first_render_p50_s'] * 1000:.0f} ms",
        f"{figures['member_first_render_max_s'] * 1000:.0f} ms (max)",
        "< 1500 ms",
    )
    table.add_row(
        "zoom (click -> charts redrawn)",
        f"{figures['zoom_p50_s'] * 1000:.0f} ms",
        f"{figures['zoom_p95_s'] * 1000:.0f} ms (p95)",
        "p95 < 300 ms",
    )
    console.print(table)
    console.print(f"load average before {load_before}, after {load_after}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "coach_app.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
