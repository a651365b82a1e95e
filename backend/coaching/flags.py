"""Flags: the rules of `backend.coaching.rules` evaluated on one member's daily summaries
(`analytics.member_daily`) as of one day. Pure functions over plain data, shared by the
triage list (as of today) and the alert detector (every day it looks at).

A generic rule compares the median of its recent window with its threshold, and needs
`min_days` days with data in that window. A personal rule compares the median of the
last `RECENT_DAYS` days with the member's own baseline (median and MAD of the
`BASELINE_DAYS` days before them) and needs `MIN_BASELINE_DAYS` days with data in the
baseline and two in the recent window: never a flag on too little data."""

from __future__ import annotations

import bisect
import datetime as dt
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from backend.coaching.rules import (
    BASELINE_DAYS,
    MAD_SCALE,
    MIN_BASELINE_DAYS,
    PERSONAL_Z,
    RECENT_DAYS,
    RULES,
    Rule,
)

# A member's daily values: day -> metric (a member_daily column) -> value or None.
Series = Mapping[dt.date, Mapping[str, float | None]]


@dataclass(frozen=True)
class Baseline:
    median: float
    mad: float
    days: int

    def to_json(self) -> dict[str, Any]:
        return {"median": round(self.median, 2), "mad": round(self.mad, 2), "days": self.days}


@dataclass(frozen=True)
class Flag:
    rule: Rule
    day: dt.date  # the day it was evaluated as of
    value: float  # the recent window's median
    threshold: str
    baseline: Baseline | None
    coverage_days: int  # days with data behind it (window, plus baseline when personal)
    explanation: str
    # The observations behind it (time, value): a day's value stands at its midnight UTC.
    evidence: tuple[tuple[dt.datetime, float], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule.id,
            "version": self.rule.version,
            "kind": self.rule.kind,
            "metric": self.rule.metric,
            "value": round(self.value, 2),
            "threshold": self.threshold,
            "baseline": self.baseline.to_json() if self.baseline else None,
            "coverage_days": self.coverage_days,
            "explanation": self.explanation,
        }

    def evidence_json(self) -> list[dict[str, Any]]:
        """The values the rule looked at, as observations (code, time, value, unit)."""
        return [
            {
                "code": self.rule.code,
                "at": at.isoformat(),
                "value": round(value, 2),
                "unit": self.rule.unit,
            }
            for at, value in self.evidence
        ]


class Days:
    """A member's daily values by metric, as sorted day numbers (ordinals) and values: a
    window is two bisections, not a lookup per day (the triage list evaluates every rule
    for a few hundred members per request)."""

    def __init__(self, columns: Mapping[str, tuple[list[int], list[float]]]) -> None:
        self.columns = columns

    @classmethod
    def of(cls, series: Series) -> Days:
        columns: dict[str, tuple[list[int], list[float]]] = {}
        for day in sorted(series):
            for metric, value in series[day].items():
                if value is not None:
                    days, values = columns.setdefault(metric, ([], []))
                    days.append(day.toordinal())
                    values.append(float(value))
        return cls(columns)

    @classmethod
    def from_rows(
        cls, rows: Iterable[Sequence[Any]], metrics: Sequence[str], visible: Collection[str]
    ) -> Days:
        """Rows of (day, value per metric), in day order, keeping only `visible` metrics."""
        keep = [(i, m) for i, m in enumerate(metrics, start=1) if m in visible]
        columns: dict[str, tuple[list[int], list[float]]] = {m: ([], []) for _, m in keep}
        for row in rows:
            ordinal = row[0].toordinal()
            for i, m in keep:
                value = row[i]
                if value is not None:
                    days, values = columns[m]
                    days.append(ordinal)
                    values.append(float(value))
        return cls(columns)

    def window(self, metric: str, first: dt.date, last: dt.date) -> list[tuple[dt.date, float]]:
        column = self.columns.get(metric)
        if column is None:
            return []
        days, values = column
        lo = bisect.bisect_left(days, first.toordinal())
        hi = bisect.bisect_right(days, last.toordinal())
        return [(dt.date.fromordinal(days[i]), values[i]) for i in range(lo, hi)]

    def has(self, day: dt.date) -> bool:
        o = day.toordinal()
        for days, _ in self.columns.values():
            i = bisect.bisect_left(days, o)
            if i < len(days) and days[i] == o:
                return True
        return False


def _days(series: Series | Days) -> Days:
    return series if isinstance(series, Days) else Days.of(series)


def _values(
    series: Series | Days, metric: str, first: dt.date, last: dt.date
) -> list[tuple[dt.date, float]]:
    return _days(series).window(metric, first, last)


def baseline(series: Series | Days, metric: str, before: dt.date) -> Baseline | None:
    """Median and MAD of `metric` over the `BASELINE_DAYS` days before `before`; None with
    fewer than `MIN_BASELINE_DAYS` days with data."""
    values = [
        v
        for _, v in _values(
            series, metric, before - dt.timedelta(days=BASELINE_DAYS), before - dt.timedelta(days=1)
        )
    ]
    if len(values) < MIN_BASELINE_DAYS:
        return None
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    return Baseline(median, mad, len(values))


def _stamped(values: list[tuple[dt.date, float]]) -> tuple[tuple[dt.datetime, float], ...]:
    return tuple((dt.datetime.combine(d, dt.time(), tzinfo=dt.UTC), v) for d, v in values)


def _fmt(value: float, unit: str) -> str:
    return f"{value:.0f} {unit}" if abs(value) >= 20 else f"{value:.1f} {unit}"


def evaluate(rule: Rule, series: Series | Days, day: dt.date) -> Flag | None:
    """The rule's flag for this member as of `day` (its window ends on `day`), or None."""
    series = _days(series)
    first = day - dt.timedelta(days=rule.window_days - 1)
    recent = _values(series, rule.metric, first, day)
    base: Baseline | None = None
    if rule.kind == "generic":
        if len(recent) < rule.min_days:
            return None
        value = statistics.median(v for _, v in recent)
        fired = value >= rule.threshold if rule.direction == "above" else value < rule.threshold
        why = f" over {len(recent)} day(s) with data."
    else:
        base = baseline(series, rule.metric, first) if len(recent) >= 2 else None
        if base is None:
            return None
        value = statistics.median(v for _, v in recent)
        margin = max(PERSONAL_Z * MAD_SCALE * base.mad, rule.threshold)
        if rule.direction == "above":
            fired = value > base.median + margin
        else:
            fired = value < base.median - margin
        why = (
            f" against a baseline of {_fmt(base.median, rule.unit)} (MAD {base.mad:.1f},"
            f" {base.days} days with data); a change of more than {_fmt(margin, rule.unit)}"
            " counts."
        )
    if not fired:
        return None
    return Flag(
        rule,
        day,
        value,
        rule.threshold_text(),
        base,
        len(recent) + (base.days if base else 0),
        f"{rule.sentence} Median of the last {rule.window_days} days:"
        f" {_fmt(value, rule.unit)}{why}",
        _stamped(recent),
    )


def flags(
    series: Series | Days, day: dt.date, categories: Iterable[str], rules: Iterable[Rule] = RULES
) -> list[Flag]:
    """Every rule that fires as of `day`, among those reading a category in `categories`
    (what the viewer may see)."""
    allowed = set(categories)
    series = _days(series)
    return [
        f
        for rule in rules
        if rule.category in allowed and (f := evaluate(rule, series, day)) is not None
    ]


def recent_window_start(day: dt.date) -> dt.date:
    """The first day any rule (or baseline) as of `day` reads."""
    longest = max(r.window_days for r in RULES)
    return day - dt.timedelta(days=max(longest, RECENT_DAYS + BASELINE_DAYS))


def lab_flags(latest: Iterable[tuple[str, float, str, dt.datetime]], day: dt.date) -> list[Flag]:
    """Flags of the latest result of each lab code (code, value, unit, time): outside its
    reference range (`lab-out-of-range`, one flag per code), and fasting glucose at or
    above the diabetes cut-off (`glucose-high`)."""
    from backend.coaching import labs
    from backend.coaching.rules import GLUCOSE_RULE, LAB_RULE

    out = []
    for code, value, unit, at in latest:
        status = labs.flag(code, value)
        ref = labs.REFERENCE.get(code)
        if status in ("low", "high") and ref is not None:
            rule = replace(LAB_RULE, metric=code, code=code, unit=unit)
            bounds = _range_text(ref.low, ref.high, unit)
            out.append(
                Flag(
                    rule,
                    day,
                    value,
                    bounds,
                    None,
                    1,
                    f"{rule.sentence} {ref.note}: {value:g} {unit} on {at.date().isoformat()}"
                    f" is {status}.",
                    ((at, value),),
                )
            )
        if code == GLUCOSE_RULE.code and value >= GLUCOSE_RULE.threshold:
            out.append(
                Flag(
                    GLUCOSE_RULE,
                    day,
                    value,
                    GLUCOSE_RULE.threshold_text().replace(
                        f"{GLUCOSE_RULE.window_days}-day median", "latest result"
                    ),
                    None,
                    1,
                    f"{GLUCOSE_RULE.sentence} Latest: {value:g} {unit} on {at.date().isoformat()}.",
                    ((at, value),),
                )
            )
    return out


def _range_text(low: float | None, high: float | None, unit: str) -> str:
    """The threshold a lab result crossed, as a coach reads it: an open-ended range is
    "above 129 mg/dL", not "outside -..129"."""
    if low is None and high is not None:
        return f"above {high:g} {unit}"
    if high is None and low is not None:
        return f"below {low:g} {unit}"
    return f"outside {low:g}..{high:g} {unit}"
