"""How much detail a timeline shows for the range on screen: day buckets for weeks to
months, hour buckets for days, the raw (minute-level) observations below that.

Bucketed ranges are widened to whole buckets so the backend answers from the rollups
(it reads them only for aligned ranges: docs/analytics.md). Raw points are thinned in the
app when there are more than a screen can show (`downsample`: per bin the first, minimum,
maximum and last point, so spikes survive)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

# Above these spans the next coarser bucket is used.
RAW_MAX = dt.timedelta(hours=36)
HOUR_MAX = dt.timedelta(days=10)
# Points per series a chart keeps (about two per pixel of a wide chart).
MAX_POINTS = 2_000

_STEP = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime
    bucket: str | None  # None: raw observations

    @property
    def label(self) -> str:
        return {"day": "daily", "hour": "hourly"}.get(self.bucket or "", "minute (raw)")


def _floor(t: dt.datetime, step: dt.timedelta) -> dt.datetime:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return epoch + ((t - epoch) // step) * step


def window_for(start: dt.datetime, end: dt.datetime) -> Window:
    """The window to ask the backend for, to show [start, end)."""
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    if end <= start:
        end = start + dt.timedelta(minutes=1)
    span = end - start
    bucket = None if span <= RAW_MAX else "hour" if span <= HOUR_MAX else "day"
    if bucket is None:
        return Window(start, end, None)
    step = _STEP[bucket]
    aligned_end = _floor(end, step)
    if aligned_end < end:
        aligned_end += step
    return Window(_floor(start, step), aligned_end, bucket)


T = TypeVar("T")


def downsample(points: Sequence[T], values: Sequence[float], limit: int = MAX_POINTS) -> list[T]:
    """At most about `limit` of `points` (in time order; `values` their values): in each of
    limit/4 bins the first, lowest, highest and last, in their original order."""
    n = len(points)
    if n <= limit:
        return list(points)
    bins = max(1, limit // 4)
    kept: list[T] = []
    for b in range(bins):
        lo, hi = b * n // bins, (b + 1) * n // bins
        if lo >= hi:
            continue
        idx = range(lo, hi)
        pick = {lo, hi - 1, min(idx, key=values.__getitem__), max(idx, key=values.__getitem__)}
        kept.extend(points[i] for i in sorted(pick))
    return kept
