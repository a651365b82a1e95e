"""Apple Health exports (`export.xml`), written as a stream: a cohort member's week, or a
years-long history of about a given number of records for memory benchmarks.

The file opens with Apple's own DTD (HealthKit export version 13), then `ExportDate`,
`Me`, and the data as an iPhone and Apple Watch leave it: heart rate every 5 minutes,
active and basal energy, iPhone step and distance intervals, sleep (in bed and stages),
SpO2 (as Apple's fraction), respiratory rate, SDNN, a morning weight, blood pressure (as
top-level records plus their correlation), workouts, water and activity summaries (the
last two not mapped by the platform)."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

from backend.synth.faults import FUTURE, Faults, implausible
from backend.synth.manifest import FileEntry, Tally
from backend.synth.members import CohortSpec, Member, stream_rng
from backend.synth.timeline import (
    ASLEEP,
    CADENCE,
    DAY,
    Clock,
    DayPlan,
    day_states,
    hr_targets,
    night_stages,
    plans,
)

APPLE_DTD = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!-- HealthKit Export Version: 13 -->
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord|Audiogram|VisionPrescription)*)>
<!ATTLIST HealthData
  locale CDATA #REQUIRED
>
<!ELEMENT ExportDate EMPTY>
<!ATTLIST ExportDate
  value CDATA #REQUIRED
>
<!ELEMENT Me EMPTY>
<!ATTLIST Me
  HKCharacteristicTypeIdentifierDateOfBirth                 CDATA #REQUIRED
  HKCharacteristicTypeIdentifierBiologicalSex               CDATA #REQUIRED
  HKCharacteristicTypeIdentifierBloodType                   CDATA #REQUIRED
  HKCharacteristicTypeIdentifierFitzpatrickSkinType         CDATA #REQUIRED
  HKCharacteristicTypeIdentifierCardioFitnessMedicationsUse CDATA #REQUIRED
>
<!ELEMENT Record ((MetadataEntry|HeartRateVariabilityMetadataList)*)>
<!ATTLIST Record
  type          CDATA #REQUIRED
  unit          CDATA #IMPLIED
  value         CDATA #IMPLIED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!-- Note: Any Records that appear as children of a correlation also appear as top-level records in this document. -->
<!ELEMENT Correlation ((MetadataEntry|Record)*)>
<!ATTLIST Correlation
  type          CDATA #REQUIRED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!ELEMENT Workout ((MetadataEntry|WorkoutEvent|WorkoutRoute|WorkoutStatistics)*)>
<!ATTLIST Workout
  workoutActivityType   CDATA #REQUIRED
  duration              CDATA #IMPLIED
  durationUnit          CDATA #IMPLIED
  totalDistance         CDATA #IMPLIED
  totalDistanceUnit     CDATA #IMPLIED
  totalEnergyBurned     CDATA #IMPLIED
  totalEnergyBurnedUnit CDATA #IMPLIED
  sourceName            CDATA #REQUIRED
  sourceVersion         CDATA #IMPLIED
  device                CDATA #IMPLIED
  creationDate          CDATA #IMPLIED
  startDate             CDATA #REQUIRED
  endDate               CDATA #REQUIRED
>
<!ELEMENT WorkoutEvent (MetadataEntry*)>
<!ATTLIST WorkoutEvent
  type         CDATA #REQUIRED
  date         CDATA #REQUIRED
  duration     CDATA #IMPLIED
  durationUnit CDATA #IMPLIED
>
<!ELEMENT WorkoutStatistics EMPTY>
<!ATTLIST WorkoutStatistics
  type      CDATA #REQUIRED
  startDate CDATA #REQUIRED
  endDate   CDATA #REQUIRED
  average   CDATA #IMPLIED
  minimum   CDATA #IMPLIED
  maximum   CDATA #IMPLIED
  sum       CDATA #IMPLIED
  unit      CDATA #IMPLIED
>
<!ELEMENT WorkoutRoute ((MetadataEntry|FileReference)*)>
<!ATTLIST WorkoutRoute
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!ELEMENT FileReference EMPTY>
<!ATTLIST FileReference
  path CDATA #REQUIRED
>
<!ELEMENT ActivitySummary EMPTY>
<!ATTLIST ActivitySummary
  dateComponents           CDATA #IMPLIED
  activeEnergyBurned       CDATA #IMPLIED
  activeEnergyBurnedGoal   CDATA #IMPLIED
  activeEnergyBurnedUnit   CDATA #IMPLIED
  appleMoveTime            CDATA #IMPLIED
  appleMoveTimeGoal        CDATA #IMPLIED
  appleExerciseTime        CDATA #IMPLIED
  appleExerciseTimeGoal    CDATA #IMPLIED
  appleStandHours          CDATA #IMPLIED
  appleStandHoursGoal      CDATA #IMPLIED
>
<!ELEMENT MetadataEntry EMPTY>
<!ATTLIST MetadataEntry
  key   CDATA #REQUIRED
  value CDATA #REQUIRED
>
<!-- Note: Heart Rate Variability records captured by Apple Watch may include an associated list of instantaneous beats-per-minute readings. -->
<!ELEMENT HeartRateVariabilityMetadataList (InstantaneousBeatsPerMinute*)>
<!ELEMENT InstantaneousBeatsPerMinute EMPTY>
<!ATTLIST InstantaneousBeatsPerMinute
  bpm  CDATA #REQUIRED
  time CDATA #REQUIRED
>
<!ELEMENT ClinicalRecord EMPTY>
<!ATTLIST ClinicalRecord
  type              CDATA #REQUIRED
  identifier        CDATA #REQUIRED
  sourceName        CDATA #REQUIRED
  sourceURL         CDATA #REQUIRED
  fhirVersion       CDATA #REQUIRED
  receivedDate      CDATA #REQUIRED
  resourceFilePath  CDATA #REQUIRED
>
<!ELEMENT Audiogram EMPTY>
<!ATTLIST Audiogram
  type          CDATA #REQUIRED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!ELEMENT VisionPrescription EMPTY>
<!ATTLIST VisionPrescription
  type             CDATA #REQUIRED
  dateIssued       CDATA #REQUIRED
  expirationDate   CDATA #REQUIRED
  brand            CDATA #IMPLIED
>
]>
"""  # noqa: E501 (Apple's DTD, verbatim)

_HK = "HKQuantityTypeIdentifier"
_WATCH = (
    ' sourceName="Apple Watch" sourceVersion="11.1" device="&lt;&lt;HKDevice: 0x283b2c1e0&gt;,'
    " name:Apple Watch, manufacturer:Apple Inc., model:Watch, hardware:Watch7,2,"
    ' software:11.1&gt;"'
)
_PHONE = (
    ' sourceName="iPhone" sourceVersion="18.1" device="&lt;&lt;HKDevice: 0x283b2d4a0&gt;,'
    " name:iPhone, manufacturer:Apple Inc., model:iPhone, hardware:iPhone15,2,"
    ' software:18.1&gt;"'
)
_SCALE = ' sourceName="Withings" sourceVersion="6.4.1"'
# Another app that writes the watch's readings back into Health: an overlapping source.
_ECHO = ' sourceName="Health Mate" sourceVersion="6.4.1"'

_CODES = {
    "HeartRate": "8867-4",
    "ActiveEnergyBurned": "41981-2",
    "BasalEnergyBurned": "x-rejuve:basal-energy",
    "StepCount": "55423-8",
    "DistanceWalkingRunning": "x-rejuve:distance",
    "BodyMass": "29463-7",
}
_STAGES = {
    "asleep_core": "HKCategoryValueSleepAnalysisAsleepCore",
    "asleep_deep": "HKCategoryValueSleepAnalysisAsleepDeep",
    "asleep_rem": "HKCategoryValueSleepAnalysisAsleepREM",
    "awake": "HKCategoryValueSleepAnalysisAwake",
}
_WORKOUTS = {
    "running": "Running",
    "cycling": "Cycling",
    "rowing": "Rowing",
    "hiking": "Hiking",
}
_KG_PER_LB = 0.45359237
_SECONDS = tuple(f"{s:02d}" for s in range(60))
_HOURS_MINUTES = tuple(f" {m // 60:02d}:{m % 60:02d}:" for m in range(DAY))
# Records per day of `_days`, a little under the real mean (~500) so that `apple_export`
# starts early enough to reach the count asked for.
_PER_DAY = 420


def write_export(spec: CohortSpec, member: Member, path: Path) -> Tally:
    """The member's export for the cohort's timeline."""
    tally = Tally()
    _write(path, spec, member, Clock.of(spec, member), tally, limit=None)
    return tally


def apple_export(spec: CohortSpec, member: Member, out_path: Path, records: int) -> FileEntry:
    """An export of about `records` records (whole days, ending before the cohort's
    timeline ends), streamed to `out_path`: memory stays flat whatever the size (~380
    bytes a record, so 2.8 M records make a 1 GB file)."""
    days = records // _PER_DAY + 2
    clock = Clock.between(member, spec.end - dt.timedelta(days=days), spec.end)
    tally = Tally()
    _write(out_path, spec, member, clock, tally, limit=records)
    return FileEntry.of(str(out_path), "apple-health", str(member.member_id), tally)


def _write(
    path: Path, spec: CohortSpec, member: Member, clock: Clock, tally: Tally, limit: int | None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write(_head(member, clock))
        for chunk in _days(spec, member, clock, tally):
            out.write(chunk)
            if limit is not None and tally.records >= limit:
                break
        out.write("</HealthData>\n")


class _Stamps:
    """Apple's "2026-11-01 08:15:30 +0100" for axis minutes, by concatenation."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        offset = clock.tz.utcoffset(None) // dt.timedelta(minutes=1)
        sign = "-" if offset < 0 else "+"
        self.zone = f" {sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
        self._dates: dict[int, str] = {}

    def __call__(self, minute: int, second: int) -> str:
        day, rest = divmod(minute, DAY)
        date = self._dates.get(day)
        if date is None:
            date = self._dates[day] = self._clock.date(day).isoformat()
        return date + _HOURS_MINUTES[rest] + _SECONDS[second] + self.zone

    def far(self, minute: int, second: int) -> str:
        moment = self._clock.moment(minute, second) + FUTURE
        return moment.strftime("%Y-%m-%d %H:%M:%S %z")


def _head(member: Member, clock: Clock) -> str:
    stamps = _Stamps(clock)
    sex = "HKBiologicalSexMale" if member.sex == "male" else "HKBiologicalSexFemale"
    return (
        f'{APPLE_DTD}<HealthData locale="en_US">\n'
        f' <ExportDate value="{stamps(clock.last, 0)}"/>\n'
        f' <Me HKCharacteristicTypeIdentifierDateOfBirth="{member.birth_year}-01-01"'
        f' HKCharacteristicTypeIdentifierBiologicalSex="{sex}"'
        ' HKCharacteristicTypeIdentifierBloodType="HKBloodTypeNotSet"'
        ' HKCharacteristicTypeIdentifierFitzpatrickSkinType="HKFitzpatrickSkinTypeNotSet"'
        ' HKCharacteristicTypeIdentifierCardioFitnessMedicationsUse="None"/>\n'
    )


class _Writer:
    """Formats records and keeps the tally; the faults go into quantity records only."""

    def __init__(self, spec: CohortSpec, member: Member, clock: Clock, tally: Tally) -> None:
        self.stamp = _Stamps(clock)
        self.tally = tally
        self.faults = Faults(stream_rng(spec.seed, "apple-faults", member.member_id), spec)
        self.lines: list[str] = []

    def quantity(
        self, kind: str, unit: str, start: int, end: int, second: int, value: str, source: str
    ) -> None:
        stamp = self.stamp
        first, last = stamp(start, second), stamp(end, second)
        value_attr = f' value="{value}"'
        unit_attr = unit
        tally = self.tally
        tally.records += 1
        if self.faults.bad():
            tally.bad += 1
            fault = self.faults.pick(("missing", "comma", "implausible", "unit", "future", "order"))
            if fault == "missing":
                value_attr = ""
            elif fault == "comma":
                value_attr = f' value="{value},5"'  # a decimal comma: not a number Apple writes
            elif fault == "implausible":
                value_attr = f' value="{implausible(_CODES[kind]):g}"'
            elif fault == "unit":
                unit_attr = "mmHg"
            elif fault == "future":
                first, last = stamp.far(start, second), stamp.far(end, second)
            else:
                last = stamp(start - 2, second)  # ends before it starts
            if fault in ("missing", "comma", "order"):
                tally.rejected += 1
            else:
                tally.samples += 1
            self.lines.append(self._record(kind, source, unit_attr, first, last, value_attr))
            return
        tally.samples += 1
        line = self._record(kind, source, unit_attr, first, last, value_attr)
        self.lines.append(line)
        if self.faults.duplicate():
            tally.records += 1
            tally.samples += 1
            tally.duplicates += 1
            if self.faults.rng.random() < 0.5:
                self.lines.append(line)  # the same element twice, as merged exports have it
            else:
                self.lines.append(self._record(kind, _ECHO, unit_attr, first, last, value_attr))

    @staticmethod
    def _record(kind: str, source: str, unit: str, first: str, last: str, value: str) -> str:
        return (
            f' <Record type="{_HK}{kind}"{source} unit="{unit}" creationDate="{last}"'
            f' startDate="{first}" endDate="{last}"{value}/>\n'
        )

    def plain(self, kind: str, unit: str, start: int, end: int, second: int, value: str) -> None:
        """A quantity record left whole (no faults): samples the parser takes as they are."""
        first, last = self.stamp(start, second), self.stamp(end, second)
        self.tally.records += 1
        self.tally.samples += 1
        self.lines.append(self._record(kind, _WATCH, unit, first, last, f' value="{value}"'))

    def sleep(self, value: str, start: int, end: int, second: int) -> None:
        first, last = self.stamp(start, second), self.stamp(end, second)
        self.tally.records += 1
        self.tally.samples += 1
        self.lines.append(
            f' <Record type="HKCategoryTypeIdentifierSleepAnalysis"{_WATCH}'
            f' creationDate="{last}" startDate="{first}" endDate="{last}" value="{value}"/>\n'
        )

    def blood_pressure(self, minute: int, second: int, systolic: int, diastolic: int) -> None:
        t = self.stamp(minute, second)
        times = f' creationDate="{t}" startDate="{t}" endDate="{t}"'
        records = [
            f'<Record type="{_HK}BloodPressure{name}"{_SCALE} unit="mmHg"{times} value="{value}"/>'
            for name, value in (("Systolic", systolic), ("Diastolic", diastolic))
        ]
        # Apple writes each reading twice: at the top level and inside its correlation;
        # the parser takes the first sighting, so 3 elements read give 2 samples.
        self.lines.append(
            f" {records[0]}\n {records[1]}\n"
            f' <Correlation type="HKCorrelationTypeIdentifierBloodPressure"{_SCALE}{times}>\n'
            f"  {records[0]}\n  {records[1]}\n </Correlation>\n"
        )
        self.tally.records += 3
        self.tally.samples += 2

    def workout(self, activity: str, start: int, end: int, second: int) -> None:
        first, last = self.stamp(start, second), self.stamp(end, second)
        self.lines.append(
            f' <Workout workoutActivityType="HKWorkoutActivityType{_WORKOUTS[activity]}"'
            f' duration="{end - start}" durationUnit="min"{_WATCH}'
            f' creationDate="{last}" startDate="{first}" endDate="{last}">\n </Workout>\n'
        )
        self.tally.records += 1
        self.tally.samples += 1

    def unmapped(self, line: str) -> None:
        self.lines.append(line)
        self.tally.records += 1
        self.tally.unmapped += 1


def _days(spec: CohortSpec, member: Member, clock: Clock, tally: Tally) -> Iterator[str]:
    """Each day's elements as one string."""
    rng = stream_rng(spec.seed, "apple", member.member_id, clock.day0, clock.first)
    writer = _Writer(spec, member, clock, tally)
    stamp = writer.stamp
    weight_unit = "lb" if member.weight_unit == "lb" else "kg"
    hr = member.resting_hr
    days = plans(rng, member, clock.days.start)
    plan = next(days)
    for today in clock.days:
        tomorrow = next(days)
        base = today * DAY
        lo = max(clock.first - base, 0)
        lo = -(-lo // 5) * 5
        hi = min(clock.last - base, DAY)
        states = day_states(plan)
        targets = hr_targets(member, plan)
        events = _events(plan)
        for mod in range(lo, hi, 5):
            minute = base + mod
            state = states[mod]
            # Seconds 30..54: the member's other sources write :00 or :01..:29.
            second = 30 + (mod // 5) % 25
            hr += (targets[state] - hr) * 0.8 + (rng.random() - 0.5) * 6.0
            writer.quantity(
                "HeartRate", "count/min", minute, minute, second, str(round(hr)), _WATCH
            )
            if mod % 30 == 0:
                kcal = f"{rng.uniform(30, 38):.3f}"
                writer.quantity(
                    "BasalEnergyBurned", "kcal", minute, minute + 30, second, kcal, _WATCH
                )
            if state != ASLEEP:
                if mod % 10 == 0:
                    kcal = f"{(3.0 + 4.0 * state) * rng.uniform(0.6, 1.4):.3f}"
                    writer.quantity(
                        "ActiveEnergyBurned", "kcal", minute, minute + 10, second, kcal, _WATCH
                    )
                if mod % 60 == 5:
                    walked = sum(CADENCE[s] for s in states[mod : mod + 50])
                    steps = int(walked * rng.uniform(0.7, 1.2))
                    writer.quantity(
                        "StepCount", "count", minute, minute + 50, second, str(steps), _PHONE
                    )
                    km = f"{steps * 0.00074:.3f}"
                    writer.quantity(
                        "DistanceWalkingRunning", "km", minute, minute + 50, second, km, _PHONE
                    )
            else:
                if mod % 120 == 40:
                    writer.plain(
                        "OxygenSaturation",
                        "%",
                        minute,
                        minute,
                        second,
                        f"0.{rng.randrange(93, 100)}",
                    )
                elif mod % 120 == 80:
                    rr = f"{rng.uniform(12.0, 17.0):.1f}"
                    writer.plain("RespiratoryRate", "count/min", minute, minute, second, rr)
                if mod % 180 == 100:
                    sdnn = f"{member.hrv_ms * rng.uniform(0.7, 1.3):.1f}"
                    writer.plain("HeartRateVariabilitySDNN", "ms", minute, minute + 1, second, sdnn)
            event = events.get(mod)
            if event == "weight":
                kg = member.weight_kg + rng.gauss(0, 0.3)
                value = round(kg / _KG_PER_LB if weight_unit == "lb" else kg, 1)
                writer.quantity("BodyMass", weight_unit, minute, minute, second, str(value), _SCALE)
            elif event == "pressure" and today % 2 == 0:
                systolic = round(member.systolic + rng.gauss(0, 7))
                diastolic = round(member.diastolic + rng.gauss(0, 5))
                writer.blood_pressure(minute, second, systolic, diastolic)
            elif event == "water":
                t = stamp(minute, second)
                writer.unmapped(
                    f' <Record type="{_HK}DietaryWater" sourceName="WaterMinder"'
                    f' sourceVersion="5.6" unit="mL" creationDate="{t}" startDate="{t}"'
                    f' endDate="{t}" value="{rng.choice((250, 330, 500))}"/>\n'
                )
            elif event is not None and event.startswith("workout:"):
                bout = plan.bouts[int(event.split(":")[1])]
                writer.workout(bout.activity, base + bout.start, base + bout.end, second)
            elif event == "bed":
                _night(writer, rng, clock, base + plan.bed, (today + 1) * DAY + tomorrow.wake)
        if hi == DAY:
            # Apple writes the activity rings once a day; the platform does not map them.
            writer.unmapped(
                f' <ActivitySummary dateComponents="{clock.date(today).isoformat()}"'
                f' activeEnergyBurned="{rng.uniform(250, 700):.1f}" activeEnergyBurnedGoal="500"'
                ' activeEnergyBurnedUnit="kcal" appleMoveTime="0" appleMoveTimeGoal="0"'
                f' appleExerciseTime="{rng.randrange(0, 60)}" appleExerciseTimeGoal="30"'
                f' appleStandHours="{rng.randrange(6, 14)}" appleStandHoursGoal="12"/>\n'
            )
        plan = tomorrow
        yield "".join(writer.lines)
        writer.lines.clear()


def _events(plan: DayPlan) -> dict[int, str]:
    """Once-a-day elements, by the 5-minute slot they are written in."""
    events: dict[int, str] = {}
    slot = (plan.wake + 10) // 5 * 5
    events[slot] = "weight"
    events[slot + 5] = "pressure"
    events[600] = "water"
    events[900] = "water"
    for index, bout in enumerate(plan.bouts):
        if bout.activity != "walking":
            events.setdefault(bout.end // 5 * 5, f"workout:{index}")
    events.setdefault(plan.bed // 5 * 5, "bed")
    return events


def _night(writer: _Writer, rng: random.Random, clock: Clock, bed: int, wake: int) -> None:
    """In bed, then the stages, for a night that starts inside the timeline."""
    if bed - 10 >= clock.first:
        writer.sleep("HKCategoryValueSleepAnalysisInBed", bed - 10, wake + 5, 40)
    for stage in night_stages(rng, bed, wake):
        if stage.start >= clock.last:
            break
        writer.sleep(_STAGES[stage.qualifier], stage.start, stage.start + stage.minutes, 45)
