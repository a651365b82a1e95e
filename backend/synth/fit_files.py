"""A member's workouts as FIT activity files (`fit`), written with fit-tool the way a
Garmin watch writes them: `file_id` (garmin, fenix 6), a timer start `event`, `record`
messages every 4 seconds (heart rate, cadence, speed, cumulative distance, and power on
runs and rides), a timer stop `event`, the `session` summary and the closing `activity`
with its local timestamp.

Records fall on seconds 3, 7, ..., 59 of a minute: the member's other sources write
heart rate at :00 and :30, so a FIT sample never repeats theirs by accident.

Faults, at the cohort's rates: a record with an implausible power (quarantined), a record
without its timestamp (rejected by the parser), and a workout uploaded twice (the second
file's samples are all duplicates)."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

# fit-tool ships no type information.
from fit_tool.fit_file_builder import FitFileBuilder  # type: ignore[import-untyped, unused-ignore]
from fit_tool.profile.messages.activity_message import ActivityMessage  # type: ignore[import-untyped, unused-ignore]
from fit_tool.profile.messages.event_message import EventMessage  # type: ignore[import-untyped, unused-ignore]
from fit_tool.profile.messages.file_id_message import FileIdMessage  # type: ignore[import-untyped, unused-ignore]
from fit_tool.profile.messages.record_message import RecordMessage  # type: ignore[import-untyped, unused-ignore]
from fit_tool.profile.messages.session_message import SessionMessage  # type: ignore[import-untyped, unused-ignore]
from fit_tool.profile.profile_type import (  # type: ignore[import-untyped, unused-ignore]
    Event,
    EventType,
    FileType,
    GarminProduct,
    Manufacturer,
    Sport,
)

from backend.synth.faults import Faults, implausible
from backend.synth.manifest import Tally
from backend.synth.members import CohortSpec, Member, stream_rng
from backend.synth.timeline import EXERCISE, Bout, hr_targets, local_dates, plans

EVERY_SECONDS = 4
_FIRST_SECOND = 3
# FIT's epoch: 1989-12-31 00:00 UTC, 631065600 s after the Unix epoch.
_FIT_EPOCH = 631_065_600
_SPORTS = {
    "running": (Sport.RUNNING, 2.9, True),
    "cycling": (Sport.CYCLING, 7.0, True),
    "rowing": (Sport.ROWING, 3.3, False),
    "hiking": (Sport.HIKING, 1.3, False),
}  # sport, speed (m/s), power meter


@dataclass(frozen=True)
class FitFile:
    name: str  # e.g. 2026-11-01-1-running.fit
    data: bytes
    tally: Tally
    again: bool = False  # a second upload of the file before it


def fit_files(spec: CohortSpec, member: Member) -> list[FitFile]:
    """One FIT file per workout in the timeline (and a second upload of some)."""
    rng = stream_rng(spec.seed, "fit", member.member_id)
    faults = Faults(stream_rng(spec.seed, "fit-faults", member.member_id), spec)
    first_day = (spec.start.astimezone(member.tz).date() - dt.date(1970, 1, 1)).days
    out: list[FitFile] = []
    for date, plan in zip(local_dates(spec, member), plans(rng, member, first_day), strict=False):
        midnight = dt.datetime.combine(date, dt.time(), tzinfo=member.tz)
        for number, bout in enumerate(plan.bouts, start=1):
            begin = midnight + dt.timedelta(minutes=bout.start, seconds=_FIRST_SECOND)
            end = midnight + dt.timedelta(minutes=bout.end)
            if bout.state != EXERCISE or begin < spec.start or end >= spec.end:
                continue
            heart = hr_targets(member, plan)[EXERCISE]
            data, tally = _activity(rng, faults, member, bout, begin, end, heart)
            name = f"{date.isoformat()}-{number}-{bout.activity}.fit"
            out.append(FitFile(name, data, tally))
            if faults.duplicate():
                again = Tally(
                    **{**vars(tally), "duplicates": tally.samples - tally.bad + tally.rejected}
                )
                out.append(FitFile(name.replace(".fit", "-again.fit"), data, again, again=True))
    return out


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _activity(
    rng: random.Random,
    faults: Faults,
    member: Member,
    bout: Bout,
    begin: dt.datetime,
    end: dt.datetime,
    heart: float,
) -> tuple[bytes, Tally]:
    tally = Tally()
    sport, speed, powered = _SPORTS.get(bout.activity, (Sport.GENERIC, 2.0, False))
    builder = FitFileBuilder(auto_define=True, min_string_size=50)

    def add(message: object, *, samples: int = 0, unmapped: int = 0) -> None:
        builder.add(message)
        tally.records += 1
        tally.samples += samples
        tally.unmapped += unmapped

    file_id = FileIdMessage()
    file_id.type = FileType.ACTIVITY
    file_id.manufacturer = Manufacturer.GARMIN.value
    file_id.product = GarminProduct.FENIX6.value
    file_id.serial_number = int(member.member_id.hex[:8], 16)
    file_id.time_created = _ms(begin)
    add(file_id)
    add(_event(EventType.START, begin), unmapped=1)
    distance = 0.0
    moment = begin
    while moment < end:
        record = RecordMessage()
        record.timestamp = _ms(moment)
        record.heart_rate = max(40, min(220, round(heart + rng.gauss(0, 6))))
        record.cadence = round(rng.gauss(85, 4))
        pace = max(0.2, speed + rng.gauss(0, 0.2))
        distance += pace * EVERY_SECONDS
        record.speed = round(pace, 3)
        record.distance = round(distance, 2)
        samples = 3
        if powered:
            record.power = round(rng.gauss(230, 25))
            samples = 4
            if faults.bad():
                record.power = round(implausible("x-rejuve:power"))
                tally.bad += 1
        add(record, samples=samples)
        if faults.bad():
            # A record whose timestamp the device lost: refused by the parser.
            lost = RecordMessage()
            lost.heart_rate = record.heart_rate
            builder.add(lost)
            tally.records += 1
            tally.rejected += 1
            tally.bad += 1
        moment += dt.timedelta(seconds=EVERY_SECONDS)
    add(_event(EventType.STOP_ALL, end), unmapped=1)
    session = SessionMessage()
    session.timestamp = _ms(end)
    session.start_time = _ms(begin)
    session.total_elapsed_time = (end - begin).total_seconds()
    session.total_timer_time = (end - begin).total_seconds()
    session.sport = sport
    session.total_distance = round(distance, 2)
    session.avg_heart_rate = round(heart)
    add(session, samples=2)
    activity = ActivityMessage()
    activity.timestamp = _ms(end)
    # local_timestamp is a FIT time (seconds since 1989-12-31) on the wall clock.
    activity.local_timestamp = int(end.timestamp()) - _FIT_EPOCH + member.tz_offset_minutes * 60
    activity.num_sessions = 1
    add(activity, unmapped=1)
    return builder.build().to_bytes(), tally


def _event(kind: EventType, at: dt.datetime) -> EventMessage:
    event = EventMessage()
    event.event = Event.TIMER
    event.event_type = kind
    event.timestamp = _ms(at)
    return event
