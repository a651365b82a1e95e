"""The triage list: the coach's members in one table, worst first, as the backend ranks
them (`GET /v1/coach/triage`), each flag with its rule, threshold and the data coverage
behind it. Rendered as one HTML table: 200 rows draw at once, with no widget per cell."""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any


def ago(iso: str | None, now: dt.datetime) -> str:
    if not iso:
        return "never"
    t = dt.datetime.fromisoformat(iso)
    seconds = (now - t).total_seconds()
    if seconds < 3600:
        return f"{max(0, int(seconds // 60))} min ago"
    if seconds < 86_400 * 2:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86_400)} days ago"


def baseline_text(baseline: dict[str, Any] | None) -> str:
    """A personal rule's baseline in words ('' for a generic rule); numbers only."""
    if not baseline:
        return ""
    return (
        f"baseline median {float(baseline['median']):.4g}, MAD {float(baseline['mad']):.3g}"
        f" over {int(baseline['days'])} days"
    )


def _flag(f: dict[str, Any]) -> str:
    base = baseline_text(f.get("baseline"))
    base = f"; {base}" if base else ""
    title = (
        f"rule {f['rule']} v{f['version']} ({f['kind']}): {f['metric']} = {f['value']:.4g},"
        f" threshold {f['threshold']}{base}; {f['coverage_days']} days with data"
    )
    return (
        f'<li class="flag flag-{escape(str(f["kind"]))}" title="{escape(title)}">'
        f"<b>{escape(str(f['explanation']))}</b><br><small>{escape(title)}</small></li>"
    )


def _consent(c: dict[str, Any]) -> str:
    if c.get("coaching") != "granted":
        return '<span class="withheld">coaching consent withdrawn: no data shown</span>'
    withheld = c.get("withheld_categories") or []
    if not withheld:
        return "granted"
    return (
        f'granted; <span class="withheld">withheld by the member: '
        f"{escape(', '.join(map(str, withheld)))}</span>"
    )


def table_html(triage: dict[str, Any], now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    members = triage.get("members") or []
    rows = []
    for rank, m in enumerate(members, 1):
        member = escape(str(m["member"]))
        cov = m.get("wear_coverage_7d")
        flags = "".join(_flag(f) for f in m.get("flags") or [])
        rows.append(
            f'<tr class="triage-row" data-member="{member}">'
            f"<td>{rank}</td>"
            f'<td><a class="member-link" href="member?member={member}">{member[:8]}</a></td>'
            f"<td>{float(m.get('score') or 0):.1f}</td>"
            f"<td>{m.get('open_alerts', 0)}</td>"
            f"<td>{escape(ago(m.get('last_sync'), now))}</td>"
            f"<td>{'-' if cov is None else f'{float(cov):.0%}'}</td>"
            f"<td>{_consent(m.get('consent') or {})}</td>"
            f'<td><ul class="flags">{flags or "<li>none</li>"}</ul></td></tr>'
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "#",
            "member",
            "score",
            "open alerts",
            "last sync",
            "wear 7 d",
            "consent",
            "flags (hover: rule, threshold, coverage)",
        )
    )
    body = "".join(rows) or '<tr><td colspan="8">No members are assigned to you.</td></tr>'
    return (
        f'<table class="triage" id="triage"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
        f'<p class="as-of">as of {escape(str(triage.get("as_of", "")))};'
        f" {len(members)} members, worst first</p>"
    )
