"""A member's consumer apps as Open mHealth data points (a JSON array): a smart scale and
blood-pressure cuff (body-weight, blood-pressure) and a fitness tracker (heart-rate,
daily step-count, sleep-episode). Every point validates against the vendored schemas
unless it was made bad on purpose."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from backend.synth import episodes as ep
from backend.synth.faults import FUTURE, Faults, implausible
from backend.synth.fhir import Shared
from backend.synth.manifest import Tally
from backend.synth.members import CohortSpec, Member, stream_rng
from backend.synth.timeline import iso, local_dates, spot

_KG_PER_LB = 0.45359237
_SCALE = "Withings Health Mate"
_TRACKER = "Fitbit"

# What each schema maps to: (version, the unit-value keys and their codes).
_SCHEMAS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "body-weight": ("3.0", (("body_weight", "29463-7"),)),
    "blood-pressure": (
        "3.1",
        (("systolic_blood_pressure", "8480-6"), ("diastolic_blood_pressure", "8462-4")),
    ),
    "heart-rate": ("2.0", (("heart_rate", "8867-4"),)),
    "step-count": ("3.0", (("step_count", "55423-8"),)),
    "sleep-episode": ("1.1", ()),
}
# A unit each schema's enum refuses, as apps with their own spelling write it.
_FOREIGN_UNITS = {
    "body-weight": "stone",
    "blood-pressure": "kPa",
    "heart-rate": "bpm",
    "step-count": "count",
}


@dataclass
class _Point:
    schema: str
    when: dt.datetime  # start of the effective time frame
    body: dict[str, Any]
    source: str
    overlap: bool = False  # repeats another source's reading: a duplicate, never spoilt
    rejected: bool = False
    bad_samples: int = 0

    @property
    def samples(self) -> int:
        return 0 if self.rejected else max(1, len(_SCHEMAS[self.schema][1]))


def points(spec: CohortSpec, member: Member, shared: list[Shared]) -> tuple[bytes, Tally]:
    rng = stream_rng(spec.seed, "omh", member.member_id)
    faults = Faults(stream_rng(spec.seed, "omh-faults", member.member_id), spec)
    made: list[_Point] = []
    injected = ep.episodes(spec, member)
    for index, date in enumerate(local_dates(spec, member)):
        today = ep.effect(injected, date) if injected else ep.NONE
        # The night that starts this evening ends tomorrow morning.
        tonight = ep.effect(injected, date + dt.timedelta(days=1)) if injected else ep.NONE
        # Seconds 1..29: the other sources of this member write :00 or :30 and later, so
        # a reading here never repeats theirs by accident.
        when = spot(spec, member, date, 390 + rng.randrange(90), rng.randrange(1, 30))
        if when is not None:
            made.append(_weight(member, when, member.weight_kg + rng.gauss(0, 0.3)))
        when = spot(spec, member, date, 420 + rng.randrange(30), rng.randrange(1, 30))
        if when is not None and index % 2 == 0:
            systolic = round(member.systolic + rng.gauss(0, 7))
            diastolic = round(member.diastolic + rng.gauss(0, 5))
            body = {
                "systolic_blood_pressure": {"value": systolic, "unit": "mmHg"},
                "diastolic_blood_pressure": {"value": diastolic, "unit": "mmHg"},
                "effective_time_frame": {"date_time": iso(when)},
                "body_posture": "sitting",
            }
            made.append(_Point("blood-pressure", when, body, _SCALE))
        for hour in (9, 13, 17, 21):
            when = spot(spec, member, date, hour * 60 + rng.randrange(60), rng.randrange(1, 30))
            value = round(member.resting_hr + 8 + rng.gauss(0, 5) + today.rhr)
            if when is not None:
                body = {
                    "heart_rate": {"value": value, "unit": "beats/min"},
                    "effective_time_frame": {"date_time": iso(when)},
                    "temporal_relationship_to_physical_activity": "at rest",
                }
                made.append(_Point("heart-rate", when, body, _TRACKER))
        midnight = spot(spec, member, date, 0)
        steps = round(rng.uniform(2500, 9000) * (0.6 + member.activity))
        if midnight is not None and midnight + dt.timedelta(days=1) <= spec.end:
            made.append(_interval("step-count", midnight, dt.timedelta(days=1), steps))
        onset = spot(spec, member, date, 1350 + rng.randrange(75), rng.randrange(1, 30))
        length = dt.timedelta(minutes=rng.randrange(360, 540) - tonight.sleep_cut)
        if onset is not None:
            made.append(_interval("sleep-episode", onset, length, None))
    for result in shared:
        if result.code == "29463-7" and faults.duplicate():
            # The clinic's scale syncs to the member's app too: the same weighing twice.
            unit = "lb" if result.unit == "[lb_av]" else result.unit
            point = _Point(
                "body-weight",
                result.when,
                {
                    "body_weight": {"value": result.value, "unit": unit},
                    "effective_time_frame": {"date_time": iso(result.when)},
                },
                _SCALE,
                overlap=True,
            )
            made.append(point)
    made.sort(key=lambda p: p.when)

    tally = Tally()
    out: list[dict[str, Any]] = []
    for number, point in enumerate(made):
        if not point.overlap and faults.bad():
            _spoil(point, faults)
        document = _document(point, member, number)
        out.append(document)
        tally.records += 1
        if point.rejected:
            tally.rejected += 1
            tally.bad += 1
            continue
        tally.samples += point.samples
        tally.bad += point.bad_samples
        good = point.samples - point.bad_samples
        if point.overlap:
            tally.duplicates += good
        elif point.bad_samples == 0 and faults.duplicate():
            # The app resent the point after a timeout: same id, same content.
            out.append(document)
            tally.records += 1
            tally.samples += good
            tally.duplicates += good
    return (json.dumps(out, indent=1) + "\n").encode(), tally


def _weight(member: Member, when: dt.datetime, kg: float) -> _Point:
    if member.weight_unit == "lb":
        value = {"value": round(kg / _KG_PER_LB, 1), "unit": "lb"}
    else:
        value = {"value": round(kg, 1), "unit": "kg"}
    body = {"body_weight": value, "effective_time_frame": {"date_time": iso(when)}}
    return _Point("body-weight", when, body, _SCALE)


def _interval(schema: str, start: dt.datetime, length: dt.timedelta, value: int | None) -> _Point:
    body: dict[str, Any] = {
        "effective_time_frame": {
            "time_interval": {"start_date_time": iso(start), "end_date_time": iso(start + length)}
        }
    }
    if schema == "step-count":
        body["step_count"] = {"value": value, "unit": "steps"}
    else:
        body["is_main_sleep"] = True
    return _Point(schema, start, body, _TRACKER)


def _spoil(point: _Point, faults: Faults) -> None:
    keys = _SCHEMAS[point.schema][1]
    kinds = ["missing", "unit", "implausible", "future"] if keys else ["missing", "future"]
    kind = faults.pick(kinds)
    frame = point.body["effective_time_frame"]
    if kind == "future":
        for holder in (frame, frame.get("time_interval", {})):
            for key in ("date_time", "start_date_time", "end_date_time"):
                if key in holder:
                    holder[key] = iso(dt.datetime.fromisoformat(holder[key]) + FUTURE)
        point.bad_samples = point.samples
    elif kind == "missing":
        # A unit-value without its value, or an interval without its end: the schema
        # refuses both.
        if keys:
            del point.body[keys[0][0]]["value"]
        else:
            del frame["time_interval"]["end_date_time"]
        point.rejected = True
    elif kind == "unit":
        point.body[keys[0][0]]["unit"] = _FOREIGN_UNITS[point.schema]
        point.rejected = True
    else:
        key, code = keys[0]
        point.body[key]["value"] = implausible(code)
        point.bad_samples = 1


def _document(point: _Point, member: Member, number: int) -> dict[str, Any]:
    version = _SCHEMAS[point.schema][0]
    created = point.when.astimezone(dt.UTC) + dt.timedelta(minutes=3)
    return {
        "header": {
            "id": str(uuid.uuid5(member.member_id, f"omh-{number}")),
            "creation_date_time": iso(created),
            "schema_id": {"namespace": "omh", "name": point.schema, "version": version},
            "acquisition_provenance": {"source_name": point.source, "modality": "sensed"},
            "user_id": str(member.member_id),
        },
        "body": point.body,
    }
