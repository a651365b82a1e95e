"""The workbench's plot data and the cohort explorer's logic, without a stack or a browser:
backend answers as the cohort-statistics route gives them (its JSON shape) in, what the
plot and the widget show out."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from workbench.client import SUPPRESSED, _cohort_frame
from workbench.explorer import CohortExplorer, ExplorerState, Filters
from workbench.plots import aligned, cohort_figure, legend, series


def _answer(
    rows: list[tuple[list[Any], dict[str, Any]]], suppressed: list[Any], dims: list[str]
) -> dict[str, Any]:
    return {
        "threshold": 10,
        "dims": dims,
        "rows": [{"key": k, "margin": "Total" in k, "values": v} for k, v in rows],
        "suppressed": [{"key": k, "statistic": s, "reason": r} for k, s, r in suppressed],
        "notes": ["count is distinct members"],
    }


DAILY = _answer(
    [
        (["2026-11-02"], {"count": 12, "mean": 60.5, "sd": 1.0}),
        (["2026-11-03"], {"count": None, "mean": None, "sd": None}),
        (["2026-11-04"], {"count": 11, "mean": 61.0, "sd": None}),  # sd undefined, not withheld
        (["Total"], {"count": 14, "mean": 60.7, "sd": 1.1}),
    ],
    [(["2026-11-03"], None, "suppressed")],
    ["period"],
)


def test_withheld_cells_read_suppressed_and_undefined_ones_stay_empty() -> None:
    frame = _cohort_frame(DAILY)
    assert list(frame["count"]) == [12, SUPPRESSED, 11, 14]
    assert frame.loc[2, "sd"] is None or pd.isna(frame.loc[2, "sd"])
    assert frame.attrs["withheld"] == DAILY["suppressed"]


def test_a_withheld_cell_is_a_gap_with_its_reason() -> None:
    (line,) = series(_cohort_frame(DAILY), "mean")
    assert line.periods == ["2026-11-02", "2026-11-03", "2026-11-04"]  # no margin
    assert line.values[0] == 60.5 and math.isnan(line.values[1]) and line.values[2] == 61.0
    assert list(line.reasons) == ["2026-11-03"]
    assert "fewer than 10 members" in line.reasons["2026-11-03"]
    text = legend([line])
    assert "2026-11-03" in text and "fewer than 10 members" in text
    # An undefined statistic is a gap too, said to be empty rather than withheld.
    (sd,) = series(_cohort_frame(DAILY), "sd")
    assert "no observations" in sd.reasons["2026-11-04"] or "2026-11-04" in sd.reasons


def test_the_figure_has_a_hover_band_per_gap() -> None:
    from bokeh.models import HoverTool, VBar

    fig = cohort_figure(series(_cohort_frame(DAILY), "mean"), "t", "mean")
    bands = [r for r in fig.renderers if isinstance(r.glyph, VBar)]
    assert len(bands) == 1
    assert bands[0].data_source.data["period"] == ["2026-11-03"]
    assert "fewer than 10 members" in bands[0].data_source.data["why"][0]
    assert any(bands[0] in h.renderers for h in fig.tools if isinstance(h, HoverTool))


def test_by_group_draws_one_line_each() -> None:
    answer = _answer(
        [
            (["2026-11-02", "female"], {"count": 10, "mean": 60.0}),
            (["2026-11-02", "male"], {"count": None, "mean": None}),
            (["2026-11-02", "Total"], {"count": 15, "mean": 61.0}),
            (["Total", "female"], {"count": 10, "mean": 60.0}),
            (["Total", "male"], {"count": None, "mean": None}),
            (["Total", "Total"], {"count": 15, "mean": 61.0}),
        ],
        [(["2026-11-02", "male"], None, "suppressed"), (["Total", "male"], None, "suppressed")],
        ["period", "sex"],
    )
    frame = _cohort_frame(answer)
    lines = {s.label: s for s in series(frame, "mean", by="sex")}
    assert set(lines) == {"female", "male"}
    assert math.isnan(lines["male"].values[0]) and "2026-11-02" in lines["male"].reasons
    (overall,) = series(frame, "mean")  # without `by`: the margin over sex
    assert overall.values == [61.0]


def _bands(size: int | None, cells: dict[str, int | None]) -> dict[str, Any]:
    rows = [
        (["Total", b], {"count": c, "mean": None if c is None else 60.0}) for b, c in cells.items()
    ]
    rows.append((["Total", "Total"], {"count": size, "mean": 60.0 if size else None}))
    withheld = [(["Total", b], None, "suppressed") for b, c in cells.items() if c is None]
    if size is None:
        withheld.append((["Total", "Total"], None, "suppressed"))
    return _answer(rows, withheld, ["period", "age_band"])


class _Backend:
    """Answers like `Workbench.cohort_stats` for one study; records what it was asked."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.asked: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> pd.DataFrame:
        self.asked.append(kwargs)
        return _cohort_frame(self.answer)


def test_explorer_sends_the_filters_and_reads_size_and_bands() -> None:
    backend = _Backend(_bands(25, {"40-49": 12, "50-59": None, "60-69": 13}))
    explorer = CohortExplorer(backend, code="8867-4", start="2026-11-01", end="2026-11-08")
    s = explorer.state(Filters(("female",), 40, 70, "HbA1c >= 6.5 %"))
    (asked,) = backend.asked
    assert asked["sex"] == ["female"] and asked["age_min"] == 40 and asked["age_max"] == 70
    assert asked["criteria"] == [{"code": "4548-4", "op": ">=", "value": 6.5}]
    assert asked["by"] == ["age_band"] and asked["code"] == "8867-4"
    assert s.size == 25
    assert s.bands == ["40-49", "50-59", "60-69"]
    assert s.counts[0] == 12 and math.isnan(s.counts[1])
    assert list(s.withheld) == ["50-59"] and "fewer than 10" in s.withheld["50-59"]
    assert "25" in s.message() and "1 age band" in s.message()


def test_explorer_says_why_the_size_is_withheld() -> None:
    explorer = CohortExplorer(
        _Backend(_bands(None, {"40-49": None})), code="8867-4", start="a", end="b"
    )
    s = explorer.state(Filters())
    assert s.size is None and s.reason is not None
    assert "withheld" in s.message() and "fewer than 10 members" in s.message()


def test_no_filter_sends_no_demographics() -> None:
    assert Filters().query() == {"criteria": []}


def test_state_message_of_a_full_answer() -> None:
    s = ExplorerState(30, None, ["40-49"], [30.0])
    assert s.message() == "Cohort size: <b>30</b> members"


def test_lines_of_several_answers_share_their_periods() -> None:
    steps = _answer(
        [
            (["2026-11-02"], {"count": 12, "mean": 5000.0}),
            (["Total"], {"count": 12, "mean": 5000.0}),
        ],
        [],
        ["period"],
    )
    lines = aligned({"heart rate": _cohort_frame(DAILY), "steps": _cohort_frame(steps)}, "count")
    assert [s.label for s in lines] == ["heart rate", "steps"]
    assert lines[1].periods == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert lines[1].values[0] == 12 and math.isnan(lines[1].values[2])
    assert "no observations" in lines[1].reasons["2026-11-04"]
    assert "fewer than 10" in lines[0].reasons["2026-11-03"]


def test_an_answer_with_no_cell_still_has_its_columns_and_plots_empty() -> None:
    frame = _cohort_frame(_answer([], [], ["period"]), ["count", "mean"])
    assert list(frame.columns) == ["period", "count", "mean"] and frame.empty
    assert int((frame["count"] == SUPPRESSED).sum()) == 0
    (line,) = series(frame, "mean")
    assert line.periods == [] and legend([line]) == "Every cell is shown."
