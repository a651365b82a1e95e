"""Plots of cohort statistics: Bokeh figures shown through Panel with inline resources,
so a notebook on a network without internet still renders them (no CDN).

A withheld cell is a gap in the line (never a zero, never interpolated) with a grey band
over its period; hovering the band, and the legend under the plot, say why it is
withheld. The reasons are those the backend gives researchers: it does not say which
withheld cell is the small one and which was withheld to protect it (that would narrow
the small one down), so neither does the plot."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from workbench.client import SUPPRESSED

REASONS = {
    "suppressed": (
        "fewer than {k} members, or withheld so that totals or earlier answers cannot "
        "reveal a small cell"
    ),
    "statistic_withheld": (
        "this statistic alone is withheld (a minimum or maximum is one member's value)"
    ),
    "no_data": "no observations in this cell",
}
TOTAL = "Total"

_ready = False


def extension() -> None:
    """Load Panel's and Bokeh's JavaScript into the notebook, inline (no CDN); once."""
    global _ready
    if not _ready:
        import panel as pn

        pn.extension(inline=True)
        _ready = True


def _pane(fig: Any) -> Any:
    import panel as pn

    return pn.pane.Bokeh(fig)  # type: ignore[no-untyped-call]  # panel ships no types


def _markdown(text: str) -> Any:
    import panel as pn

    return pn.pane.Markdown(text)  # type: ignore[no-untyped-call]


def reason_text(reason: str, threshold: int) -> str:
    return REASONS.get(reason, reason).format(k=threshold)


@dataclass(frozen=True)
class Series:
    """What one plotted line is made of: every period in order, the value (NaN where
    withheld or empty), and per gap the reason in words."""

    label: str
    periods: list[str]
    values: list[float]
    reasons: dict[str, str]


def _number(v: Any) -> float:
    if v is None or v == SUPPRESSED or (isinstance(v, float) and math.isnan(v)):
        return math.nan
    return float(v)


def series(frame: pd.DataFrame, stat: str = "mean", by: str | None = None) -> list[Series]:
    """Lines to draw from a `Workbench.cohort_stats` frame: one per value of `by` (or
    one), over the periods, margins left out."""
    threshold = int(frame.attrs.get("threshold", 10))
    withheld = frame.attrs.get("withheld", [])
    dims: list[str] = list(frame.attrs.get("dims", ["period"]))
    why: dict[tuple[Any, ...], str] = {}
    for s in withheld:
        if s["statistic"] in (None, stat):
            why.setdefault(tuple(s["key"]), s["reason"])
    if frame.empty:
        return [Series("all", [], [], {})]
    rows = frame[frame["period"] != TOTAL]
    periods = list(dict.fromkeys(rows["period"]))
    groups = [None] if by is None else [g for g in dict.fromkeys(rows[by]) if g != TOTAL]
    out = []
    for g in groups:
        part = rows if g is None else rows[rows[by] == g]
        if by is None and len(dims) > 1:  # only the margin over the other dimension
            part = part[part[dims[1]] == TOTAL]
        values, reasons = [], {}
        by_period = {r["period"]: r for _, r in part.iterrows()}
        for p in periods:
            r = by_period.get(p)
            v = math.nan if r is None else _number(r[stat])
            values.append(v)
            if math.isnan(v):
                key = tuple(r[d] for d in dims) if r is not None else None
                reasons[p] = reason_text(why.get(key, "no_data") if key else "no_data", threshold)
        out.append(Series("all" if g is None else str(g), periods, values, reasons))
    return out


def legend(lines: list[Series]) -> str:
    """Markdown: each withheld or empty cell and why."""
    items = [
        f"- **{p}**{'' if len(lines) == 1 else f' ({s.label})'}: {why}"
        for s in lines
        for p, why in s.reasons.items()
    ]
    if not items:
        return "Every cell is shown."
    return "Gaps in the plot (grey bands):\n\n" + "\n".join(items)


_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def cohort_figure(lines: list[Series], title: str, y_label: str) -> Any:
    """A Bokeh figure: a line and dots per series, gaps where withheld, grey bands over
    periods with a gap, their hover saying why."""
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d
    from bokeh.plotting import figure

    periods = lines[0].periods if lines else []
    finite = [v for s in lines for v in s.values if not math.isnan(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    pad = (high - low) * 0.15 or 1.0
    fig = figure(
        x_range=FactorRange(factors=periods),
        y_range=Range1d(start=low - pad, end=high + pad),
        height=320,
        sizing_mode="stretch_width",
        title=title,
        y_axis_label=y_label,
        toolbar_location="above",
    )
    gaps: dict[str, list[str]] = {}
    for s in lines:
        for p, why in s.reasons.items():
            gaps.setdefault(p, []).append(why if len(lines) == 1 else f"{s.label}: {why}")
    if gaps:
        bands = ColumnDataSource(
            {
                "period": list(gaps),
                "why": ["; ".join(w) for w in gaps.values()],
                "top": [high + pad] * len(gaps),
                "bottom": [low - pad] * len(gaps),
            }
        )
        band = fig.vbar(
            x="period",
            top="top",
            bottom="bottom",
            width=0.9,
            source=bands,
            fill_color="#bbbbbb",
            fill_alpha=0.35,
            line_color=None,
            legend_label="withheld / no data",
        )
        fig.add_tools(HoverTool(renderers=[band], tooltips=[("withheld", "@why")]))
    for i, s in enumerate(lines):
        color = _PALETTE[i % len(_PALETTE)]
        src = ColumnDataSource({"period": s.periods, "value": s.values})
        label = s.label if len(lines) > 1 else y_label
        fig.line("period", "value", source=src, line_width=2, color=color, legend_label=label)
        dots = fig.scatter("period", "value", source=src, size=7, color=color, legend_label=label)
        fig.add_tools(
            HoverTool(renderers=[dots], tooltips=[("period", "@period"), (s.label, "@value{0.0}")])
        )
    fig.xaxis.major_label_orientation = 0.8
    fig.legend.location = "top_left"
    fig.legend.click_policy = "hide"
    return fig


def cohort_plot(
    frame: pd.DataFrame, stat: str = "mean", by: str | None = None, title: str | None = None
) -> Any:
    """A Panel layout for a notebook cell: the plot of `stat` by period (one line per
    `by` group), withheld cells as gaps, and the legend of why each is withheld."""
    import panel as pn

    extension()
    lines = series(frame, stat, by)
    fig = cohort_figure(lines, title or f"{stat} by period", stat)
    return pn.Column(_pane(fig), _markdown(legend(lines)), sizing_mode="stretch_width")


def aligned(frames: dict[str, pd.DataFrame], stat: str) -> list[Series]:
    """One line per named frame (e.g. one measure each), over the union of their periods;
    a period a frame lacks is a gap with no data."""
    lines = {name: series(frame, stat)[0] for name, frame in frames.items()}
    periods = sorted({p for s in lines.values() for p in s.periods})
    out = []
    for name, s in lines.items():
        value = dict(zip(s.periods, s.values, strict=True))
        missing = {p: reason_text("no_data", 0) for p in periods if p not in value}
        out.append(
            Series(
                name,
                periods,
                [value.get(p, math.nan) for p in periods],
                {
                    p: s.reasons.get(p) or missing[p]
                    for p in periods
                    if p in s.reasons or p in missing
                },
            )
        )
    return out


def compare_plot(frames: dict[str, pd.DataFrame], stat: str, title: str, y_label: str) -> Any:
    """Several cohort answers on one plot (one line each), gaps and reasons as in
    `cohort_plot`."""
    import panel as pn

    extension()
    lines = aligned(frames, stat)
    fig = cohort_figure(lines, title, y_label)
    return pn.Column(_pane(fig), _markdown(legend(lines)), sizing_mode="stretch_width")


def bars(
    categories: list[str],
    values: list[float],
    reasons: dict[str, str],
    title: str,
    y_label: str,
) -> Any:
    """A bar chart of one value per category; a withheld category is an empty grey bar
    whose hover says why."""
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d
    from bokeh.plotting import figure

    shown = [0.0 if math.isnan(v) else v for v in values]
    top = max(shown, default=1.0) or 1.0
    fig = figure(
        x_range=FactorRange(factors=categories),
        y_range=Range1d(start=0, end=top * 1.1),
        height=280,
        sizing_mode="stretch_width",
        title=title,
        y_axis_label=y_label,
        toolbar_location="above",
    )
    src = ColumnDataSource(
        {
            "category": categories,
            "value": shown,
            "label": [
                "withheld" if c in reasons else f"{v:g}"
                for c, v in zip(categories, shown, strict=True)
            ],
            "why": [reasons.get(c, "") for c in categories],
            "ghost": [top if c in reasons else 0.0 for c in categories],
        }
    )
    ghost = fig.vbar(
        x="category",
        top="ghost",
        width=0.8,
        source=src,
        fill_color="#dddddd",
        fill_alpha=0.5,
        line_color="#999999",
        line_dash="dashed",
    )
    real = fig.vbar(x="category", top="value", width=0.8, source=src, fill_color="#1f77b4")
    fig.add_tools(
        HoverTool(renderers=[real, ghost], tooltips=[("", "@category: @label"), ("why", "@why")])
    )
    return fig
