"""Local wall-clock times without an offset, read in a member's IANA time zone.

Fitbit (and other vendors) write some times as the member's wall clock with no offset.
Reading them as UTC would shift every sample by the member's offset, so they are read in
the member's zone (a member setting, or `--tz` at ingest), and the two hours a year where
a wall-clock time is not one instant are decided here, deliberately:

- a time in a gap (the hour skipped when clocks go forward, e.g. 02:30 on a spring
  morning in Europe/Berlin) did not exist on the member's clock; the device had not
  switched yet. It is read with the offset in force before the change (PEP 495's
  `fold=0`): 02:30 CET, which is 03:30 CEST.
- a time in an overlap (the hour that repeats when clocks go back) is the first
  occurrence, unless the series it belongs to has already passed that instant: a sleep
  log or a minute series is in time order, so 01:40 after 01:50 is the second 01:40.
"""

from __future__ import annotations

import datetime as dt
import functools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.exceptions import UserError


@functools.lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name` ("Europe/Berlin"), or a UserError in one line."""
    if not name or len(name) > 64 or name.startswith("/") or ".." in name:
        raise UserError(f"not an IANA time zone name: {name!r} (e.g. Europe/Berlin)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"unknown time zone {name!r} (an IANA name, e.g. Europe/Berlin)") from None


class LocalClock:
    """Reads the wall-clock times of one series (a file, a sleep log) in `tz`."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._last: dt.datetime | None = None

    def restart(self) -> None:
        """A new series begins: an overlap no longer depends on the previous one."""
        self._last = None

    def resolve(self, wall: dt.datetime) -> dt.datetime:
        """The instant `wall` (naive) names on the member's clock, in the member's zone."""
        first = wall.replace(tzinfo=self.tz, fold=0)
        second = wall.replace(tzinfo=self.tz, fold=1)
        if first.utcoffset() == second.utcoffset():
            moment = first
        elif _exists(first):
            # An overlap: `first` is the earlier instant.
            repeated = self._last is not None and first.astimezone(dt.UTC) < self._last
            moment = second if repeated else first
        else:
            moment = first  # a gap: the offset before the change (see the module docstring)
        self._last = moment.astimezone(dt.UTC)
        return moment


def _exists(aware: dt.datetime) -> bool:
    """The wall-clock time survives a round trip through UTC (it is not in a gap)."""
    back = aware.astimezone(dt.UTC).astimezone(aware.tzinfo)
    return back.replace(tzinfo=None, fold=0) == aware.replace(tzinfo=None, fold=0)
