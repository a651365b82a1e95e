"""Open mHealth / IEEE 1752 bodies -> readings: the time frame, and for each measure the
platform keeps, the values of a body that has already passed its schema.

Mappers read fields that every version of a schema spells the same way (`heart_rate`
has been `{value, unit}` from 1.0 to 3.0; `step_count` was a plain integer before 3.0),
so one mapper serves every version; a body shape a mapper does not know is counted as
unmapped by the caller, never guessed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

Json = dict[str, Any]


class BadTime(ValueError):
    def __init__(self, field: str, detail: str, reason: str = "bad_timestamp") -> None:
        super().__init__(detail)
        self.field = field
        self.reason = reason


class ImpreciseTime(Exception):
    """A valid time frame too vague to place a sample (a date plus a part of the day)."""


class UnknownShape(Exception):
    """A valid body whose values this mapper cannot read (counted unmapped with why)."""


_DURATION_UNITS: Final[Mapping[str, dt.timedelta]] = {
    "ps": dt.timedelta(microseconds=1e-6),
    "ns": dt.timedelta(microseconds=1e-3),
    "us": dt.timedelta(microseconds=1),
    "ms": dt.timedelta(milliseconds=1),
    "sec": dt.timedelta(seconds=1),
    "min": dt.timedelta(minutes=1),
    "h": dt.timedelta(hours=1),
    "d": dt.timedelta(days=1),
    "wk": dt.timedelta(weeks=1),
    # "Mo" and "yr" are calendar units with no fixed length: left out on purpose.
}


def _instant(text: str, field: str) -> tuple[dt.datetime, int | None]:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadTime(field, f"not an ISO 8601 date-time: {text!r}") from exc
    offset = moment.utcoffset()
    if offset is None:
        # The OMH date-time schema: "If a timezone is not included, the timezone is
        # assumed to be UTC." The source stated no offset, so none is recorded.
        return moment.replace(tzinfo=dt.UTC), None
    return moment, int(offset.total_seconds() // 60)


def _duration(value: Json, field: str) -> dt.timedelta:
    unit = value["unit"]
    if unit not in _DURATION_UNITS:
        raise BadTime(f"{field}.unit", f"{unit!r} has no fixed length", "bad_value")
    return float(value["value"]) * _DURATION_UNITS[unit]


@dataclass(frozen=True, slots=True)
class When:
    start: dt.datetime
    end: dt.datetime | None
    tz_offset_minutes: int | None


def time_frame(body: Json) -> When | None:
    frame = body.get("effective_time_frame")
    if not isinstance(frame, dict):
        return None
    where = "body.effective_time_frame"
    if "date_time" in frame:
        start, offset = _instant(frame["date_time"], f"{where}.date_time")
        return When(start, None, offset)
    interval: Json = frame["time_interval"]
    where += ".time_interval"
    if "start_date_time" in interval:
        start, offset = _instant(interval["start_date_time"], f"{where}.start_date_time")
        if "end_date_time" in interval:
            end, _ = _instant(interval["end_date_time"], f"{where}.end_date_time")
        else:
            end = start + _duration(interval["duration"], f"{where}.duration")
    elif "end_date_time" in interval:
        end, offset = _instant(interval["end_date_time"], f"{where}.end_date_time")
        start = end - _duration(interval["duration"], f"{where}.duration")
    else:
        raise ImpreciseTime
    if end < start:
        raise BadTime(f"{where}.end_date_time", "the interval ends before it starts")
    return When(start, end, offset)


def _minutes(when: When) -> float | None:
    return None if when.end is None else (when.end - when.start).total_seconds() / 60


@dataclass(frozen=True, slots=True)
class Reading:
    code: str
    value: float
    unit: str
    qualifier: str | None = None


Mapper = Callable[[Json, When], list[Reading] | None]


def _quantity(body: Json, key: str, code: str, bare_unit: str | None = None) -> Reading:
    """`{value, unit}` under `key`; a bare number (step-count before 3.0) takes
    `bare_unit`."""
    quantity = body.get(key)
    if isinstance(quantity, dict) and "value" in quantity and "unit" in quantity:
        return Reading(code, float(quantity["value"]), str(quantity["unit"]))
    number = isinstance(quantity, int | float) and not isinstance(quantity, bool)
    if bare_unit is not None and number:
        return Reading(code, float(cast(float, quantity)), bare_unit)
    raise UnknownShape(f"no {key} value")


def _unit_value(code: str, key: str, bare_unit: str | None = None) -> Mapper:
    def read(body: Json, when: When) -> list[Reading]:
        return [_quantity(body, key, code, bare_unit)]

    return read


def _blood_pressure(body: Json, when: When) -> list[Reading]:
    return [
        _quantity(body, "systolic_blood_pressure", "8480-6"),
        _quantity(body, "diastolic_blood_pressure", "8462-4"),
    ]


def _sleep_episode(body: Json, when: When) -> list[Reading] | None:
    minutes = _minutes(when)
    if minutes is None:
        return None
    # The episode runs from sleep onset to final awakening (the schema's own wording).
    return [Reading("x-rejuve:sleep-stage", minutes, "min", "asleep")]


def _physical_activity(body: Json, when: When) -> list[Reading] | None:
    minutes = _minutes(when)
    if minutes is None:
        return None
    name = str(body["activity_name"]).strip().lower()
    readings = [Reading("x-rejuve:workout", minutes, "min", name)]
    # What the activity measured, over the same interval, when the body says it.
    for key, code in (("distance", "x-rejuve:distance"), ("kcal_burned", "41981-2")):
        if isinstance(body.get(key), dict):
            readings.append(_quantity(body, key, code))
    return readings


# Keyed by schema name; the namespaces that use the name share one body layout.
MAPPERS: Final[Mapping[str, Mapper]] = {
    "heart-rate": _unit_value("8867-4", "heart_rate"),
    "step-count": _unit_value("55423-8", "step_count", bare_unit="{steps}"),
    "sleep-duration": _unit_value("93832-4", "sleep_duration"),
    "total-sleep-time": _unit_value("93832-4", "total_sleep_time"),
    "sleep-episode": _sleep_episode,
    "body-weight": _unit_value("29463-7", "body_weight"),
    "body-height": _unit_value("8302-2", "body_height"),
    "body-fat-percentage": _unit_value("41982-0", "body_fat_percentage"),
    "body-mass-index": _unit_value("39156-5", "body_mass_index"),
    "blood-pressure": _blood_pressure,
    "blood-glucose": _unit_value("2339-0", "blood_glucose"),
    "body-temperature": _unit_value("8310-5", "body_temperature"),
    "oxygen-saturation": _unit_value("59408-5", "oxygen_saturation"),
    "respiratory-rate": _unit_value("9279-1", "respiratory_rate"),
    "calories-burned": _unit_value("41981-2", "kcal_burned"),
    "physical-activity": _physical_activity,
}
# Namespaces whose schemas the mappers read (granola is HealthKit's own vocabulary).
MAPPED_NAMESPACES: Final = frozenset({"omh", "ieee"})
