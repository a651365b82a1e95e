"""A member's timelines (heart rate, HRV, steps, sleep) as linked Bokeh charts that zoom
from 90 days to minutes: each change of the visible range asks the backend for that
range at the resolution `zoom.window_for` picks, and replaces the charts' data.

Charts are plain Bokeh (shipped with Panel, served by the app itself: no CDN)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from bokeh.models import ColumnDataSource, DatetimeTickFormatter, HoverTool, Range1d
from bokeh.plotting import figure

from backend.coach_app import zoom
from backend.coach_app.client import Point
from backend.ingest.catalog import CATALOG


@dataclass(frozen=True)
class Metric:
    key: str
    code: str
    title: str
    unit: str
    # "line": mean with a min-max band; "bars": totals per bucket (sum = mean x count).
    kind: str
    # Raw values are per interval in this unit; bars show totals scaled by this factor.
    scale: float = 1.0


METRICS = (
    Metric("hr", "8867-4", "Heart rate", "beats/min", "line"),
    Metric("hrv", "80404-7", "HRV (SDNN)", "ms", "line"),
    Metric("steps", "55423-8", "Steps", "steps", "bars"),
    Metric(
        "sleep",
        "x-rejuve:sleep-stage",
        "Sleep (time asleep per night; zoomed in: the episodes)",
        "hours",
        "bars",
        1 / 60,
    ),
)
SLEEP = METRICS[-1]
CODES = tuple(m.code for m in METRICS)
_BAR_WIDTH = {"day": 86_400_000 * 0.8, "hour": 3_600_000 * 0.8, None: 60_000.0}


def category(metric: Metric) -> str:
    """The consent category the metric's readings fall under."""
    return CATALOG[metric.code].category


def _ms(t: dt.datetime) -> float:
    return t.timestamp() * 1000


def columns(metric: Metric, points: list[Point], bucket: str | None) -> dict[str, Any]:
    """The chart's data for one metric: times (ms), values, band or bar widths."""
    mine = [p for p in points if p.code == metric.code]
    if bucket is None and metric.kind == "line":
        mine = zoom.downsample(mine, [p.value for p in mine])
    if metric.kind == "line":
        return {
            "t": [_ms(p.time) for p in mine],
            "v": [p.value for p in mine],
            "lo": [p.value if p.min is None else p.min for p in mine],
            "hi": [p.value if p.max is None else p.max for p in mine],
        }
    if bucket is None:
        # Raw interval observations: each its own bar, as long as it lasted when known.
        widths = [
            max(60_000.0, p.value * 60_000.0) if metric.key == "sleep" else 60_000.0 for p in mine
        ]
        return {
            "t": [_ms(p.time) + w / 2 for p, w in zip(mine, widths, strict=True)],
            "v": [p.value * metric.scale for p in mine],
            "w": widths,
        }
    width = _BAR_WIDTH[bucket]
    return {
        "t": [_ms(p.time) + width / 1.6 for p in mine],
        "v": [p.value * p.count * metric.scale for p in mine],
        "w": [width] * len(mine),
    }


def _empty(metric: Metric) -> dict[str, Any]:
    return (
        {"t": [], "v": [], "lo": [], "hi": []}
        if metric.kind == "line"
        else {
            "t": [],
            "v": [],
            "w": [],
        }
    )


class Timelines:
    """The four charts of one member page, sharing one x range."""

    def __init__(
        self, fetch: Callable[[zoom.Window], list[Point]], start: dt.datetime, end: dt.datetime
    ) -> None:
        self._fetch = fetch
        # The mouse zooms no closer than a quarter of an hour, no wider than the backend's
        # longest range.
        self.x_range = Range1d(
            start=_ms(start),
            end=_ms(end),
            min_interval=15 * 60_000,
            max_interval=366 * 86_400_000,
        )
        self.sources = {m.key: ColumnDataSource(_empty(m)) for m in METRICS}
        self.figures = [self._figure(m) for m in METRICS]
        self.window: zoom.Window | None = None

    def _figure(self, metric: Metric) -> Any:
        fig = figure(
            height=170,
            sizing_mode="stretch_width",
            x_axis_type="datetime",
            x_range=self.x_range,
            tools="xpan,xwheel_zoom,xbox_zoom,reset",
            active_scroll="xwheel_zoom",
            title=f"{metric.title} ({metric.unit})",
            name=f"chart-{metric.key}",
        )
        fig.xaxis.formatter = DatetimeTickFormatter(
            days="%d %b", hours="%d %b %H:%M", minutes="%H:%M", hourmin="%H:%M"
        )
        src = self.sources[metric.key]
        if metric.kind == "line":
            fig.varea(x="t", y1="lo", y2="hi", source=src, fill_alpha=0.2, color="#d62728")
            fig.line(x="t", y="v", source=src, line_width=1.5, color="#d62728")
            # A lone reading (a night's HRV on a one-day zoom) is a dot, not nothing.
            fig.scatter(x="t", y="v", source=src, size=3, color="#d62728")
        else:
            fig.vbar(x="t", top="v", width="w", source=src, color="#1f77b4", alpha=0.8)
        fig.add_tools(
            HoverTool(
                tooltips=[("time", "@t{%F %H:%M}"), (metric.title, "@v{0.0}")],
                formatters={"@t": "datetime"},
                mode="vline",
            )
        )
        fig.toolbar.logo = None
        return fig

    def mark_withheld(self, categories: set[str]) -> None:
        """An empty chart says why: the member withholds its category from their coach."""
        for metric, fig in zip(METRICS, self.figures, strict=True):
            if category(metric) in categories:
                fig.title.text = f"{metric.title}: withheld by the member's choice"
                fig.title.text_color = "#8a4b00"

    def fetch(self, start: dt.datetime, end: dt.datetime) -> tuple[zoom.Window, list[Point]]:
        """What [start, end) shows, at the resolution it deserves (any thread)."""
        window = zoom.window_for(start, end)
        return window, self._fetch(window)

    def draw(
        self, window: zoom.Window, points: list[Point], start: dt.datetime, end: dt.datetime
    ) -> None:
        """Replace the charts' data and range (holding the document's lock)."""
        for metric in METRICS:
            self.sources[metric.key].data = columns(metric, points, window.bucket)
        self.x_range.update(start=_ms(start), end=_ms(end))
        self.window = window

    def visible(self) -> tuple[dt.datetime, dt.datetime]:
        """The range on screen (after the coach panned or zoomed with the mouse)."""
        return (
            dt.datetime.fromtimestamp(cast(float, self.x_range.start) / 1000, dt.UTC),
            dt.datetime.fromtimestamp(cast(float, self.x_range.end) / 1000, dt.UTC),
        )
