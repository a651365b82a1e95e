"""A member's days on their own clock: when they sleep, walk and train, and how their
heart and feet respond. Shared by every format that carries wearable data.

Times are minutes on a local axis whose 0 is local midnight of the day the cohort starts
on; the cohort's timeline is [clock.first, clock.last) on that axis."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass

from backend.synth.members import CohortSpec, Member

DAY = 1440

# Minute-level activity states.
ASLEEP, REST, WALK, EXERCISE = 0, 1, 2, 3
# Steps per minute in each state (mean).
CADENCE = (0.0, 4.0, 95.0, 150.0)


@dataclass(frozen=True)
class Clock:
    tz: dt.timezone
    day0: dt.date  # local date of axis day 0
    first: int  # first minute of the timeline on the axis
    last: int  # exclusive

    @classmethod
    def of(cls, spec: CohortSpec, member: Member) -> Clock:
        return cls.between(member, spec.start, spec.end)

    @classmethod
    def between(cls, member: Member, start: dt.datetime, end: dt.datetime) -> Clock:
        local = start.astimezone(member.tz)
        first = local.hour * 60 + local.minute
        minutes = int((end - start).total_seconds() // 60)
        return cls(member.tz, local.date(), first, first + minutes)

    @property
    def days(self) -> range:
        """Axis days the timeline touches."""
        return range(self.first // DAY, (self.last - 1) // DAY + 1)

    def date(self, day: int) -> dt.date:
        return self.day0 + dt.timedelta(days=day)

    def moment(self, minute: int, second: int = 0) -> dt.datetime:
        midnight = dt.datetime.combine(self.day0, dt.time(), tzinfo=self.tz)
        return midnight + dt.timedelta(minutes=minute, seconds=second)


def iso_offset(tz_offset_minutes: int) -> str:
    """ "+01:00", or "Z" for UTC as most devices write it."""
    if tz_offset_minutes == 0:
        return "Z"
    sign = "-" if tz_offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(tz_offset_minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def minute_suffixes(tz_offset_minutes: int) -> tuple[str, ...]:
    """ "HH:MM:00+01:00" for each minute of a day: timestamps by concatenation, which is
    several times cheaper than formatting a datetime per sample."""
    zone = iso_offset(tz_offset_minutes)
    return tuple(f"{m // 60:02d}:{m % 60:02d}:00{zone}" for m in range(DAY))


def iso(moment: dt.datetime) -> str:
    offset = moment.utcoffset()
    text = moment.isoformat(timespec="seconds")
    return text[:-6] + "Z" if offset == dt.timedelta(0) else text


@dataclass(frozen=True)
class Bout:
    start: int  # minute of the day
    end: int
    state: int  # WALK or EXERCISE
    intensity: float  # 0..1
    activity: str  # Apple's workout type, for exercise


@dataclass(frozen=True)
class DayPlan:
    day: int  # axis day
    wake: int  # minute of the day the night's sleep ends
    bed: int  # minute of the day the next night's sleep starts (same day, before 24:00)
    bouts: tuple[Bout, ...]


def plans(rng: random.Random, member: Member, first_day: int) -> Iterator[DayPlan]:
    """One plan per day from `first_day` on, for as long as asked."""
    day = first_day
    while True:
        wake = rng.randrange(345, 466)  # 05:45 .. 07:45
        bed = rng.randrange(1320, 1431)  # 22:00 .. 23:50
        bouts: list[Bout] = []
        # Walks: commute, errands, the dog. Kept apart by starting in separate slots.
        for slot_start in range(wake + 30, bed - 60, 180):
            if rng.random() < 0.55:
                start = slot_start + rng.randrange(0, 120)
                bouts.append(Bout(start, start + rng.randrange(8, 35), WALK, 0.3, "walking"))
        if rng.random() < member.activity:
            start = rng.randrange(max(wake + 20, 7 * 60), 19 * 60)
            activity = rng.choice(("running", "cycling", "rowing", "hiking"))
            length = rng.randrange(20, 61)
            bouts = [b for b in bouts if b.end < start or b.start > start + length]
            bouts.append(Bout(start, start + length, EXERCISE, rng.uniform(0.4, 1.0), activity))
        bouts.sort(key=lambda b: b.start)
        yield DayPlan(day, wake, bed, tuple(bouts))
        day += 1


def day_states(plan: DayPlan) -> bytearray:
    """The activity state of each minute of `plan`'s day."""
    states = bytearray([REST]) * DAY
    states[: plan.wake] = bytes(plan.wake)  # ASLEEP is 0
    states[plan.bed :] = bytes(DAY - plan.bed)
    for bout in plan.bouts:
        end = min(bout.end, plan.bed)
        if end > bout.start:
            states[bout.start : end] = bytes([bout.state]) * (end - bout.start)
    return states


def hr_targets(member: Member, plan: DayPlan) -> list[float]:
    """Mean heart rate per state for this day; exercise scales with the day's workout."""
    rhr = member.resting_hr
    intensity = max((b.intensity for b in plan.bouts if b.state == EXERCISE), default=0.6)
    return [rhr - 5.0, rhr + 14.0, rhr + 30.0, rhr + 45.0 + 55.0 * intensity]


@dataclass(frozen=True)
class Stage:
    start: int  # axis minute
    minutes: int
    qualifier: str  # asleep_core, asleep_deep, asleep_rem, awake


def night_stages(rng: random.Random, bed: int, wake: int) -> list[Stage]:
    """Sleep stages from `bed` to `wake` (axis minutes): ~90-minute cycles, deep sleep
    early in the night and REM late, with a few short awakenings."""
    stages: list[Stage] = []
    t = bed
    cycle = 0
    while t < wake:
        late = cycle >= 2
        pattern = (
            ("asleep_core", rng.randrange(15, 35)),
            ("asleep_deep", rng.randrange(2, 12) if late else rng.randrange(20, 45)),
            ("asleep_core", rng.randrange(10, 25)),
            ("asleep_rem", rng.randrange(20, 40) if late else rng.randrange(5, 18)),
            ("awake", rng.randrange(1, 8) if rng.random() < 0.4 else 0),
        )
        for qualifier, length in pattern:
            length = min(length, wake - t)
            if length <= 0:
                continue
            stages.append(Stage(t, length, qualifier))
            t += length
        cycle += 1
    return stages


def local_dates(spec: CohortSpec, member: Member) -> list[dt.date]:
    """The member's calendar days that the timeline touches (one more than `spec.days`
    unless the timeline starts at the member's midnight)."""
    first = spec.start.astimezone(member.tz).date()
    last = (spec.end - dt.timedelta(microseconds=1)).astimezone(member.tz).date()
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def spot(
    spec: CohortSpec, member: Member, date: dt.date, minute: int, second: int = 0
) -> dt.datetime | None:
    """`minute` past the member's midnight on `date`, or None outside the timeline."""
    moment = dt.datetime.combine(date, dt.time(), tzinfo=member.tz) + dt.timedelta(
        minutes=minute, seconds=second
    )
    return moment if spec.start <= moment < spec.end else None
