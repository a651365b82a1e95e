"""A member's page for their coach: timelines that zoom from 90 days to minutes, alerts with
the observations that fired them (acknowledge / dismiss), labs against their reference
ranges, and consent by category (what the member withholds, and that it is their choice).

Every section is the backend's answer to this coach's token: a member who is not theirs
is "not found" (404, audited by the backend), and the page shows nothing else."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html import escape
from typing import Any

import panel as pn
from bokeh.layouts import column

from backend.coach_app import timelines, zoom
from backend.coach_app.client import BackendRefused, CoachApi, NotYours, Point
from backend.coach_app.style import html
from backend.coach_app.triage import baseline_text
from backend.ingest.catalog import CATALOG

# Zoom presets: label -> span; each ends where the range on screen ends.
PRESETS = {
    "90 days": dt.timedelta(days=90),
    "30 days": dt.timedelta(days=30),
    "7 days": dt.timedelta(days=7),
    "1 day": dt.timedelta(days=1),
    "6 hours": dt.timedelta(hours=6),
    "1 hour": dt.timedelta(hours=1),
}
# Categories a coach can be shown (the timeline's and labs'); consent is per category.
CATEGORIES = tuple(sorted({m.category for m in CATALOG.values()}))
# Mouse zooms settle before the page asks the backend again (ms).
_DEBOUNCE_MS = 250
# Questions a page asks the backend side by side (shared by the sessions of the process).
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="coach-backend")


def consent_html(consent: dict[str, Any]) -> str:
    """Coaching consent per category: granted, withheld by the member's choice (withdrawn),
    or never given."""
    latest = {e["category"]: e for e in consent.get("effective", []) if e["purpose"] == "coaching"}
    rows = []
    for category in CATEGORIES:
        e = latest.get(category)
        if e is None:
            state, css = "not given: withheld (the member was never asked)", "withheld"
        elif e["granted"]:
            state, css = "shared with you", "granted"
        else:
            state, css = (
                f"withheld by the member's choice (withdrawn {e['recorded_at'][:10]})",
                "withheld",
            )
        rows.append(
            f'<tr class="consent-{css}" data-category="{escape(category)}">'
            f"<td>{escape(category)}</td><td>{escape(state)}</td></tr>"
        )
    return (
        '<h3>Consent for coaching</h3><table class="consent">'
        "<tr><th>category</th><th>state</th></tr>" + "".join(rows) + "</table>"
    )


def withheld_categories(consent: dict[str, Any]) -> set[str]:
    """Categories the coach does not see: withdrawn, or never granted, for coaching."""
    granted = {
        e["category"]
        for e in consent.get("effective", [])
        if e["purpose"] == "coaching" and e["granted"]
    }
    return set(CATEGORIES) - granted


def _lab_value(lab: dict[str, Any]) -> str:
    """A number with its unit, or a coded/text result as the lab worded it."""
    if lab.get("value") is not None:
        return f"{lab['value']:.4g} {escape(str(lab['unit']))}"
    if lab.get("value_boolean") is not None:
        return "yes" if lab["value_boolean"] else "no"
    return escape(str(lab.get("value_text") or lab.get("value_code") or ""))


def labs_html(labs: list[dict[str, Any]]) -> str:
    latest = [lab for lab in labs if lab.get("latest", True)]
    if not latest:
        return "<h3>Labs</h3><p>No lab results (or none shared).</p>"
    rows = []
    for lab in latest:
        low, high = lab.get("ref_low"), lab.get("ref_high")
        ref = f"{'' if low is None else low} - {'' if high is None else high}"
        flag = lab.get("flag") or ""
        rows.append(
            f'<tr class="lab lab-{escape(flag or "none")}"><td>{escape(str(lab["name"]))}'
            f" <small>{escape(str(lab['code']))}</small></td>"
            f"<td>{_lab_value(lab)}</td><td>{escape(ref)}</td>"
            f"<td><b>{escape(flag)}</b></td><td>{escape(str(lab['at'])[:10])}</td></tr>"
        )
    return (
        '<h3>Labs</h3><table class="labs"><tr><th>test</th><th>value</th>'
        "<th>reference range</th><th>flag</th><th>date</th></tr>" + "".join(rows) + "</table>"
        f"<p><small>latest result per test; {len(labs) - len(latest)} earlier results</small></p>"
    )


def evidence_html(alert: dict[str, Any]) -> str:
    base = baseline_text(alert.get("baseline"))
    base = f"<p>{base}</p>" if base else ""
    rows = "".join(
        f"<tr><td>{escape(str(e['at'])[:16])}</td><td>{escape(str(e['code']))}</td>"
        f"<td>{e['value']:.4g} {escape(str(e['unit']))}</td></tr>"
        for e in alert.get("evidence") or []
    )
    return (
        f'<div class="alert-card alert-{escape(alert["status"])}">'
        f"<b>{escape(alert['explanation'])}</b><br><small>rule {escape(alert['rule'])}"
        f" v{alert['version']}, day {escape(str(alert['day']))}, fired"
        f" {escape(str(alert['fired_at'])[:16])}, <span class='status'>"
        f"{escape(alert['status'])}</span></small>{base}"
        '<table class="evidence"><tr><th>observed at</th><th>code</th><th>value</th></tr>'
        f"{rows}</table></div>"
    )


@dataclass(frozen=True)
class Fetched:
    start: dt.datetime
    end: dt.datetime
    window: zoom.Window | None  # None: the backend refused (`error` says why)
    points: list[Point]
    took_ms: float
    error: str = ""


class MemberPage:
    """One browser session's page for one member."""

    def __init__(self, api: CoachApi, member: str, now: dt.datetime | None = None) -> None:
        self.api = api
        self.member = member
        self.now = now or dt.datetime.now(dt.UTC)
        self.status = html("", css_classes=["zoom-status"], name="zoom-status")
        self.alerts = pn.Column(name="alerts")
        self._pending: Any = None
        self._shown = 0  # redraws so far: the page's `data-seq` (tests wait on it)

    def _fetch(self, window: zoom.Window) -> list[Point]:
        if window.bucket != "day":
            return self.api.timeline(
                self.member, window.start, window.end, timelines.CODES, window.bucket
            )
        # By day, sleep is the night's time asleep from the daily summaries (the episodes
        # overlap: in bed, and each stage in it); closer in, the episodes themselves.
        codes = [c for c in timelines.CODES if c != timelines.SLEEP.code]
        days = min(366, (self.now - window.start).days + 1)
        # Both questions at once: the page waits for the slower one, not for their sum.
        daily = _POOL.submit(self.api.daily, self.member, days)
        points = self.api.timeline(self.member, window.start, window.end, codes, "day")
        return points + [
            Point(
                dt.datetime.combine(dt.date.fromisoformat(str(row["day"])), dt.time(), dt.UTC),
                timelines.SLEEP.code,
                float(row["sleep_minutes"]),
                1,
                None,
                None,
            )
            for row in daily.result()
            if row.get("sleep_minutes") is not None
        ]

    def view(self) -> Any:
        """The page with its charts drawn; alerts and labs fill in once it shows
        (`pn.state.onload`): the first render waits only for what it draws."""
        consent_asked = _POOL.submit(self.api.consent, self.member)
        end = _ceil_hour(self.now)
        self.charts = timelines.Timelines(self._fetch, end - PRESETS["90 days"], end)
        try:
            self._show(end - PRESETS["90 days"], end)
            consent = consent_asked.result()
        except NotYours:
            return refused()
        withheld = withheld_categories(consent)
        self.charts.mark_withheld(withheld)
        hidden = [m.title for m in timelines.METRICS if timelines.category(m) in withheld]
        note = (
            f'<p class="withheld">Not shown, withheld by the member\'s choice: {", ".join(hidden)}'
            f" ({', '.join(sorted(withheld & {timelines.category(m) for m in timelines.METRICS}))}"
            ").</p>"
            if hidden
            else ""
        )
        self.charts.x_range.on_change("end", self._ranged)
        buttons = pn.widgets.RadioButtonGroup(  # type: ignore[no-untyped-call]
            options=list(PRESETS), value="90 days", name="zoom", button_type="primary"
        )
        buttons.param.watch(self._preset, "value")
        self.alerts[:] = [html("<p>loading alerts...</p>")]
        self.labs = html("<h3>Labs</h3><p>loading...</p>")
        pn.state.onload(self._load_sections)
        return pn.Column(
            html(
                f'<a href="./">&larr; triage</a><h2>Member <code>{escape(self.member)}</code></h2>'
            ),
            pn.Row(buttons, self.status),
            html(note),
            pn.pane.Bokeh(column(*self.charts.figures, sizing_mode="stretch_width")),  # type: ignore[no-untyped-call]
            pn.Row(
                pn.Column(html("<h3>Alerts</h3>"), self.alerts, width=560),
                pn.Column(html(consent_html(consent)), self.labs, width=560),
            ),
            sizing_mode="stretch_width",
        )

    def _load_sections(self) -> None:
        labs = _POOL.submit(self._section, lambda: labs_html(self.api.labs(self.member)))
        self._render_alerts()
        self.labs.object = labs.result()

    def _section(self, make: Callable[[], str]) -> str:
        try:
            return make()
        except BackendRefused as e:
            return f'<p class="unavailable">unavailable: {escape(str(e))}</p>'

    # -- timelines ------------------------------------------------------------------------

    def _show(self, start: dt.datetime, end: dt.datetime) -> None:
        """Fetch and draw at once: while the page is built (no session yet); a member who
        is not the coach's raises NotYours."""
        self._draw(self._get(start, end, building=True))

    def _get(self, start: dt.datetime, end: dt.datetime, building: bool = False) -> Fetched:
        """The backend's answer for [start, end): off the server's event loop for zooms, so
        one coach's wait does not stall every other session."""
        started = time.perf_counter()
        try:
            window, points = self.charts.fetch(start, end)
        except BackendRefused as e:
            if building and isinstance(e, NotYours):
                raise
            return Fetched(start, end, None, [], 0.0, str(e))
        return Fetched(start, end, window, points, (time.perf_counter() - started) * 1000)

    def _draw(self, got: Fetched) -> None:
        self._shown += 1
        if got.window is None:
            self.status.object = (
                f'<span class="unavailable" data-seq="{self._shown}">{escape(got.error)}</span>'
            )
            return
        self.charts.draw(got.window, got.points, got.start, got.end)
        self.status.object = (
            f'<span class="resolution" data-bucket="{got.window.bucket or "raw"}"'
            f' data-seq="{self._shown}">'
            f"resolution: {got.window.label}</span> &middot; {got.start:%d %b %H:%M} -"
            f" {got.end:%d %b %H:%M} UTC <small>(backend {got.took_ms:.0f} ms)</small>"
        )

    def _preset(self, event: Any) -> None:
        _, end = self.charts.visible()
        end = min(max(end, self.now - dt.timedelta(days=365)), _ceil_hour(self.now))
        if event.new == "90 days":
            end = _ceil_hour(self.now)
        self.zoom_to(end - PRESETS[event.new], end)

    def zoom_to(self, start: dt.datetime, end: dt.datetime) -> None:
        """From a widget's callback: the charts are Bokeh models, changed only while the
        session holds its document's lock, which a callback scheduled on it does (Panel
        runs widget callbacks without it: the change would be refused)."""
        doc = pn.state.curdoc
        got = self._get(start, end)  # in the widget callback's thread
        if doc is None:
            self._draw(got)
        else:
            doc.add_next_tick_callback(lambda: self._draw(got))

    def _ranged(self, attr: str, old: Any, new: Any) -> None:
        # The coach zoomed or panned with the mouse: once it settles, fetch the new range
        # if it needs another resolution or data outside what was fetched.
        doc = pn.state.curdoc
        if doc is None:
            return
        if self._pending is not None:
            with contextlib.suppress(ValueError):  # it already ran
                doc.remove_timeout_callback(self._pending)
        self._pending = doc.add_timeout_callback(self._settled, _DEBOUNCE_MS)

    def _settled(self) -> None:
        self._pending = None
        start, end = self.charts.visible()
        wanted = zoom.window_for(start, end)
        have = self.charts.window
        if have is None or wanted.bucket != have.bucket or start < have.start or end > have.end:
            doc = pn.state.curdoc
            asked = _POOL.submit(self._get, start, end)
            if doc is not None:
                asked.add_done_callback(
                    lambda f: doc.add_next_tick_callback(lambda: self._draw(f.result()))
                )

    # -- alerts ---------------------------------------------------------------------------

    def _render_alerts(self) -> None:
        try:
            alerts = self.api.alerts(self.member, "all")
        except BackendRefused as e:
            self.alerts[:] = [html(f'<p class="unavailable">unavailable: {escape(str(e))}</p>')]
            return
        if not alerts:
            self.alerts[:] = [html("<p>No alerts.</p>")]
            return
        order = {"open": 0, "acknowledged": 1, "dismissed": 2}
        items: list[Any] = []
        for alert in sorted(alerts, key=lambda a: (order.get(a["status"], 3), a["fired_at"])):
            items.append(html(evidence_html(alert), sizing_mode="stretch_width"))
            row: list[Any] = [self._show_button(alert)]
            if alert["status"] == "open":
                note = pn.widgets.TextInput(placeholder="note (optional)", width=200)
                for decision, label, kind in (
                    ("acknowledge", "Acknowledge", "success"),
                    ("dismiss", "Dismiss", "light"),
                ):
                    button = pn.widgets.Button(name=label, button_type=kind)  # type: ignore[no-untyped-call]
                    button.on_click(self._decider(alert["id"], decision, note))
                    row.append(button)
                row.append(note)
            items.append(pn.Row(*row))
        self.alerts[:] = items

    def _show_button(self, alert: dict[str, Any]) -> Any:
        button = pn.widgets.Button(name="Show on timeline", button_type="default")  # type: ignore[no-untyped-call]
        day = dt.date.fromisoformat(str(alert["day"]))
        start = dt.datetime.combine(day, dt.time(), dt.UTC)
        button.on_click(lambda _: self.zoom_to(start, start + dt.timedelta(days=1)))
        return button

    def _decider(self, alert: str, decision: str, note: Any) -> Callable[[Any], None]:
        def decide(_: Any) -> None:
            try:
                self.api.decide(alert, decision, note.value or None)
            except BackendRefused as e:
                self.alerts.insert(0, html(f'<p class="unavailable">{escape(str(e))}</p>'))
                return
            self._render_alerts()

        return decide


def refused() -> Any:
    return pn.Column(
        html(
            '<a href="./">&larr; triage</a><h2 class="refused">Not found</h2>'
            "<p>No such member among yours. (Whether the member exists is not shown.)</p>"
        )
    )


def _ceil_hour(t: dt.datetime) -> dt.datetime:
    floored = t.replace(minute=0, second=0, microsecond=0)
    return floored if floored == t else floored + dt.timedelta(hours=1)
