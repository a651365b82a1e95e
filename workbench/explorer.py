"""The cohort explorer: filters in, the cohort's size and its distribution over age bands
out, every number under the backend's disclosure control.

`CohortExplorer` holds the logic and needs no browser: give it a function that answers
like `Workbench.cohort_stats` for one study and call `state(filters)`. `widget()` wraps it
in ipywidgets for a notebook. Each change of a filter is a new question to the backend;
questions that differ from earlier ones by fewer than k members get withheld answers
(the differencing guard), and the explorer says so rather than showing nothing."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench.client import SUPPRESSED
from workbench.plots import TOTAL, reason_text

# The sub-cohorts offered by the criterion menu: (label, criteria sent to the backend).
CRITERIA: dict[str, list[dict[str, Any]]] = {
    "anyone": [],
    "HbA1c >= 6.5 %": [{"code": "4548-4", "op": ">=", "value": 6.5}],
    "HbA1c < 6.5 %": [{"code": "4548-4", "op": "<", "value": 6.5}],
}
SEXES = ("female", "male", "other", "unknown")


@dataclass(frozen=True)
class Filters:
    sexes: tuple[str, ...] = ()  # none selected: any
    age_min: int | None = None
    age_max: int | None = None
    criterion: str = "anyone"

    def query(self) -> dict[str, Any]:
        """The keyword arguments of `Workbench.cohort_stats` these filters mean."""
        q: dict[str, Any] = {"criteria": CRITERIA[self.criterion]}
        if self.sexes:
            q["sex"] = list(self.sexes)
        if self.age_min is not None:
            q["age_min"] = self.age_min
        if self.age_max is not None:
            q["age_max"] = self.age_max
        return q


@dataclass(frozen=True)
class ExplorerState:
    """One answer: the size (None: withheld, with `reason`), members per age band
    (NaN where withheld, with the reason per band) and the backend's notes."""

    size: int | None
    reason: str | None
    bands: list[str]
    counts: list[float]
    withheld: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def message(self) -> str:
        if self.size is None:
            return f"Cohort size: <b>withheld</b> ({html.escape(self.reason or '')})"
        text = f"Cohort size: <b>{self.size}</b> members"
        if self.withheld:
            text += f"; {len(self.withheld)} age band(s) withheld (hover the grey bars)"
        return text


def _count(v: Any) -> float:
    if v is None or v == SUPPRESSED or pd.isna(v):
        return math.nan
    return float(v)


class CohortExplorer:
    """`fetch(**kwargs)` answers like `Workbench.cohort_stats` bound to one study
    (`functools.partial(wb.cohort_stats, study)`)."""

    def __init__(
        self, fetch: Callable[..., pd.DataFrame], *, code: str, start: Any, end: Any
    ) -> None:
        self.fetch = fetch
        self.base = {
            "code": code,
            "start": start,
            "end": end,
            "period": "month",
            "by": ["age_band"],
            "stats": ["mean"],
        }

    def state(self, filters: Filters) -> ExplorerState:
        frame = self.fetch(**self.base, **filters.query())
        k = int(frame.attrs.get("threshold", 10))
        why = {
            tuple(s["key"]): s["reason"]
            for s in frame.attrs.get("withheld", [])
            if s["statistic"] is None
        }
        if frame.empty:
            return ExplorerState(None, reason_text("suppressed", k), [], [], {}, [])
        over = frame[frame["period"] == TOTAL]
        size_row = over[over["age_band"] == TOTAL]
        size = _count(size_row["count"].iloc[0]) if len(size_row) else math.nan
        reason = None
        if math.isnan(size):
            reason = reason_text(why.get((TOTAL, TOTAL), "suppressed"), k)
        bands_rows = over[over["age_band"] != TOTAL]
        bands = [str(b) for b in bands_rows["age_band"]]
        counts = [_count(c) for c in bands_rows["count"]]
        withheld = {
            b: reason_text(why.get((TOTAL, b), "suppressed"), k)
            for b, c in zip(bands, counts, strict=True)
            if math.isnan(c)
        }
        return ExplorerState(
            None if math.isnan(size) else int(size),
            reason,
            bands,
            counts,
            withheld,
            list(frame.attrs.get("notes", [])),
        )

    def chart(self, s: ExplorerState) -> Any:
        import panel as pn

        from workbench.plots import _markdown, _pane, bars, extension

        extension()
        fig = bars(s.bands, s.counts, s.withheld, "Members by age band", "members")
        legend = "\n".join(f"- **{b}** withheld: {w}" for b, w in s.withheld.items())
        return pn.Column(_pane(fig), _markdown(legend or "No band withheld."))

    def widget(self, filters: Filters | None = None) -> Any:
        """ipywidgets: sex, age range and sub-cohort controls; the size, why it is withheld
        when it is, and the distribution chart, refreshed on every change."""
        import ipywidgets as w  # type: ignore[import-untyped]  # no types shipped
        from IPython.display import display

        start = filters or Filters()
        sexes = w.SelectMultiple(options=SEXES, value=start.sexes, description="sex", rows=4)
        ages = w.IntRangeSlider(
            value=(start.age_min or 0, start.age_max or 120),
            min=0,
            max=120,
            description="age",
            continuous_update=False,
        )
        criterion = w.Dropdown(options=list(CRITERIA), value=start.criterion, description="cohort")
        status = w.HTML()
        out = w.Output()

        def current() -> Filters:
            low, high = ages.value
            return Filters(
                tuple(sexes.value),
                None if low == 0 else int(low),
                None if high == 120 else int(high),
                criterion.value,
            )

        def refresh(_: object = None) -> None:
            s = self.state(current())
            status.value = s.message()
            with out:
                out.clear_output(wait=True)
                display(self.chart(s))  # type: ignore[no-untyped-call]

        for control in (sexes, ages, criterion):
            control.observe(refresh, names="value")
        refresh()
        return w.VBox([w.HBox([sexes, w.VBox([ages, criterion])]), status, out])
