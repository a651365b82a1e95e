"""A synthetic Fitbit account export (the zip fitbit.com hands out), real-shaped.

    MyFitbitData/<Name>/Physical Activity/heart_rate-YYYY-MM-DD.json   one per local day,
                                                          UTC times, `bpm` + `confidence`
    MyFitbitData/<Name>/Physical Activity/steps-, distance-, calories-YYYY-MM-DD.json
                                                          one per month, minutes, strings
    MyFitbitData/<Name>/Physical Activity/resting_heart_rate-YYYY-MM-DD.json   monthly
    MyFitbitData/<Name>/Physical Activity/altitude-YYYY-MM-DD.json   (not mapped)
    MyFitbitData/<Name>/Sleep/sleep-YYYY-MM-DD.json       monthly, "stages" logs; the last
                                                          night of a month is repeated in
                                                          the next month's file, as Fitbit's
                                                          overlapping windows do
    MyFitbitData/<Name>/Sleep/Heart Rate Variability Details - YYYY-MM-DD.csv  5-min RMSSD
    MyFitbitData/<Name>/Sleep/Minute SpO2 - YYYY-MM-DD.csv            during sleep

The member's zone is a real IANA zone with the member's fixed offset (`zone_name`), so
the export's local times and the cohort's timeline agree. Written as a stream into the
zip (memory stays flat: a member-year at one-second heart rate is ~31 M records), with
fixed member dates so the same arguments give the same bytes. The `Tally` counts what
the parser must report: records read, samples, rejections, unmapped counts.

Heart rate falls on seconds 2, 7, 12, ... of a minute, never on the device stream's whole
minutes, so no Fitbit sample shares a dedup key with the cohort's other files.
"""

from __future__ import annotations

import datetime as dt
import math
import zipfile
from collections.abc import Iterator
from pathlib import Path

from backend.synth.manifest import FileEntry, Tally
from backend.synth.members import CohortSpec, Member, stream_rng

# How many of the cohort's members upload a Fitbit export (see cohort.py).
FITBIT_EXPORTS = 2

# Zones without daylight saving time for each offset the cohort uses.
_ZONES = {
    0: "Etc/UTC",
    60: "Africa/Lagos",
    120: "Africa/Johannesburg",
    -300: "America/Bogota",
    -480: "Pacific/Pitcairn",
    330: "Asia/Kolkata",
    540: "Asia/Tokyo",
}
_STAGE_CYCLE = (("light", 40), ("deep", 25), ("light", 20), ("rem", 20), ("wake", 3))
_DATE = dt.datetime(2024, 1, 1)  # zip member dates: fixed, so the bytes are reproducible


def zone_name(member: Member) -> str:
    return _ZONES.get(member.tz_offset_minutes, "Etc/UTC")


def export_entry(spec: CohortSpec, member: Member, out: Path, rel: str) -> FileEntry:
    """The cohort's export: heart rate every 15 s (Fitbit's usual 5-15 s at rest)."""
    tally = write_export(spec, member, out / rel, hr_every_seconds=15)
    options = {"tz": zone_name(member)}
    return FileEntry.of(rel, "fitbit", str(member.member_id), tally, options=options)


def write_export(
    spec: CohortSpec,
    member: Member,
    path: Path,
    *,
    days: int | None = None,
    hr_every_seconds: int = 5,
    bad_rate: float | None = None,
) -> Tally:
    """Write the export zip to `path`; `days` from the cohort's start (default its days)."""
    tally = Tally()
    end = spec.start + dt.timedelta(days=spec.days if days is None else days)
    rate = spec.bad_rate if bad_rate is None else bad_rate
    tz = dt.timezone(dt.timedelta(minutes=member.tz_offset_minutes))
    dates = _whole_days(spec.start, end, tz)
    g = _Gen(spec, member, tz, tally, rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = f"MyFitbitData/Member{member.short_id[:6]}"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for day in dates:
            _put(
                z,
                f"{root}/Physical Activity/heart_rate-{day}.json",
                g.heart_rate(day, hr_every_seconds),
            )
        for month in _months(dates):
            name = month[0]
            _put(z, f"{root}/Physical Activity/steps-{name}.json", g.minutes(month, "steps"))
            _put(z, f"{root}/Physical Activity/distance-{name}.json", g.minutes(month, "distance"))
            _put(z, f"{root}/Physical Activity/calories-{name}.json", g.minutes(month, "calories"))
            _put(z, f"{root}/Physical Activity/resting_heart_rate-{name}.json", g.resting(month))
            _put(z, f"{root}/Sleep/sleep-{name}.json", g.sleep(month))
        _put(
            z,
            f"{root}/Physical Activity/altitude-{dates[0]}.json",
            iter(['[{"dateTime":"01/01/24 00:00:00","value":"0"}]']),
        )
        tally.unmapped += 1
        for day in dates:
            _put(z, f"{root}/Sleep/Heart Rate Variability Details - {day}.csv", g.hrv(day))
            _put(z, f"{root}/Sleep/Minute SpO2 - {day}.csv", g.spo2(day))
    return tally


def _whole_days(start: dt.datetime, end: dt.datetime, tz: dt.timezone) -> list[dt.date]:
    """The member's local days that lie wholly in [start, end): every sample of a day
    (its night's sleep included) falls on that day, so the export stays in the timeline."""
    day = start.astimezone(tz).date()
    if dt.datetime.combine(day, dt.time(), tzinfo=tz) < start:
        day += dt.timedelta(days=1)
    dates = []
    while dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz) <= end:
        dates.append(day)
        day += dt.timedelta(days=1)
    if not dates:
        raise ValueError("a Fitbit export needs at least one whole local day (days >= 2)")
    return dates


def _months(dates: list[dt.date]) -> Iterator[list[dt.date]]:
    month: list[dt.date] = []
    for day in dates:
        if month and day.month != month[0].month:
            yield month
            month = []
        month.append(day)
    if month:
        yield month


def _put(z: zipfile.ZipFile, name: str, chunks: Iterator[str]) -> None:
    info = zipfile.ZipInfo(name, date_time=_DATE.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    with z.open(info, "w", force_zip64=True) as out:
        buf: list[str] = []
        size = 0
        for chunk in chunks:
            buf.append(chunk)
            size += len(chunk)
            if size > 1 << 20:
                out.write("".join(buf).encode())
                buf.clear()
                size = 0
        out.write("".join(buf).encode())


class _Gen:
    def __init__(
        self, spec: CohortSpec, member: Member, tz: dt.timezone, tally: Tally, bad_rate: float
    ) -> None:
        self.member = member
        self.tz = tz
        self.tally = tally
        self.bad_rate = bad_rate
        self.duplicate_rate = spec.duplicate_rate
        self.seed = spec.seed
        self.rng = stream_rng(spec.seed, "fitbit", member.member_id.int)
        self.sleep_written: list[str] = []  # the last log of the previous file, repeated

    def _midnight_utc(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), tzinfo=self.tz).astimezone(dt.UTC)

    def heart_rate(self, day: dt.date, every: int) -> Iterator[str]:
        """One local day of heart rate, UTC times, Fitbit's pretty-printed objects."""
        rest = self.member.resting_hr
        rng = self.rng
        start = self._midnight_utc(day)
        sep = "["
        for minute in range(1440):
            t = start + dt.timedelta(minutes=minute)
            stamp = t.strftime("%m/%d/%y %H:%M:")
            level = rest + 25 * max(0.0, math.sin(math.pi * (minute - 420) / 840))
            parts = []
            for second in range(2 % every, 60, every):
                self.tally.records += 1
                if rng.random() < self.bad_rate:
                    bpm = '"n/a"'
                    self.tally.rejected += 1
                    self.tally.bad += 1
                else:
                    bpm = str(int(level + rng.random() * 6))
                    self.tally.samples += 1
                record = (
                    f'{{\n  "dateTime" : "{stamp}{second:02d}",\n  "value" : {{\n'
                    f'    "bpm" : {bpm},\n    "confidence" : {rng.randint(1, 3)}\n  }}\n}}'
                )
                parts.append(sep + record)
                sep = ","
                if bpm[0] != '"' and rng.random() < self.duplicate_rate:
                    # Real exports repeat a reading now and then: same second, same value.
                    parts.append(sep + record)
                    self.tally.records += 1
                    self.tally.samples += 1
                    self.tally.duplicates += 1
            yield "".join(parts)
        yield "]" if sep == "," else "[]"

    def minutes(self, month: list[dt.date], kind: str) -> Iterator[str]:
        """A month of minutes (UTC), values as strings; the night's 0 steps are "no data"."""
        sep = "["
        for day in month:
            start = self._midnight_utc(day)
            # The same draws for steps, distance and calories: one walk, three files.
            rng = stream_rng(self.seed, "fitbit-minutes", self.member.member_id.int, day)
            parts = []
            for minute in range(0, 1440):
                t = start + dt.timedelta(minutes=minute)
                awake = 420 <= minute < 1380
                steps = int(rng.random() * 90) if awake and rng.random() < 0.4 else 0
                if kind == "steps":
                    value = str(steps)
                elif kind == "distance":
                    value = str(steps * 72)  # centimetres
                else:
                    value = f"{1.0 + steps * 0.04:.2f}"
                self.tally.records += 1
                if value == "0":
                    self.tally.unmapped += 1
                else:
                    self.tally.samples += 1
                parts.append(
                    f'{sep}{{\n  "dateTime" : "{t:%m/%d/%y %H:%M:%S}",\n  "value" : "{value}"\n}}'
                )
                sep = ","
            yield "".join(parts)
        yield "]" if sep == "," else "[]"

    def resting(self, month: list[dt.date]) -> Iterator[str]:
        sep = "["
        for i, day in enumerate(month):
            self.tally.records += 1
            if i % 10 == 9:
                value = 0.0  # a day without a resting heart rate: Fitbit writes 0
                self.tally.unmapped += 1
            else:
                value = round(self.member.resting_hr + self.rng.uniform(-2, 2), 2)
                self.tally.samples += 1
            yield (
                f'{sep}{{\n  "dateTime" : "{day:%m/%d/%y} 00:00:00",\n  "value" : {{\n'
                f'    "date" : "{day:%m/%d/%y}",\n    "value" : {value},\n'
                f'    "error" : {round(self.rng.uniform(3, 8), 2)}\n  }}\n}}'
            )
            sep = ","
        yield "]" if sep == "," else "[]"

    def sleep(self, month: list[dt.date]) -> Iterator[str]:
        logs = list(self.sleep_written)  # the previous file's last log, again
        self.tally.records += len(logs)
        self.tally.unmapped += len(logs)
        for day in month:
            logs.append(self._sleep_log(day))
        self.sleep_written = logs[-1:]
        yield "[" + ",".join(logs) + "]"

    def _sleep_log(self, day: dt.date) -> str:
        """The night that ends on the morning of `day` (its `dateOfSleep`), begun after
        midnight so that it stays inside the day (local wall clock)."""
        start = dt.datetime.combine(day, dt.time(0, 15)) + dt.timedelta(
            seconds=30 * self.rng.randint(0, 40)
        )
        t = start
        data = []
        for _cycle in range(5):
            for level, minutes in _STAGE_CYCLE:
                seconds = 30 * max(1, int(minutes * 2 * self.rng.uniform(0.7, 1.3)))
                data.append(
                    f'{{"dateTime":"{t:%Y-%m-%dT%H:%M:%S}.000","level":"{level}","seconds":{seconds}}}'
                )
                t += dt.timedelta(seconds=seconds)
        in_bed = round((t - start).total_seconds() / 60)
        self.tally.records += 1
        self.tally.samples += 1 + len(data)
        self.tally.unmapped += 1  # the one shortData entry below
        log_id = int(day.strftime("%Y%m%d")) * 1000 + self.member.member_id.int % 1000
        return (
            f'{{"logId":{log_id},"dateOfSleep":"{day:%Y-%m-%d}",'
            f'"startTime":"{start:%Y-%m-%dT%H:%M:%S}.000","endTime":"{t:%Y-%m-%dT%H:%M:%S}.000",'
            f'"duration":{in_bed * 60000},"minutesToFallAsleep":0,"minutesAsleep":{in_bed - 15},'
            f'"minutesAwake":15,"minutesAfterWakeup":0,"timeInBed":{in_bed},"efficiency":94,'
            f'"type":"stages","infoCode":0,"levels":{{"summary":{{}},"data":[{",".join(data)}],'
            f'"shortData":[{{"dateTime":"{start + dt.timedelta(hours=2):%Y-%m-%dT%H:%M:%S}.000",'
            f'"level":"wake","seconds":60}}]}},"mainSleep":true}}'
        )

    def hrv(self, day: dt.date) -> Iterator[str]:
        yield "timestamp,rmssd,coverage,low_frequency,high_frequency\n"
        night = dt.datetime.combine(day, dt.time(1, 0))
        for i in range(48):
            t = night + dt.timedelta(minutes=5 * i)
            self.tally.records += 1
            self.tally.samples += 1
            rmssd = round(self.member.hrv_ms * self.rng.uniform(0.8, 1.2), 3)
            low, high = self.rng.randint(200, 900), self.rng.randint(100, 600)
            yield f"{t:%Y-%m-%dT%H:%M:%S},{rmssd},0.9,{low},{high}\n"

    def spo2(self, day: dt.date) -> Iterator[str]:
        yield "timestamp,value\n"
        night = dt.datetime.combine(day, dt.time(1, 0))
        for i in range(300):
            t = night + dt.timedelta(minutes=i)
            self.tally.records += 1
            self.tally.samples += 1
            # Tenths 1-9: never a whole number, which the cohort's device stream writes.
            value = f"{self.rng.randint(93, 98)}.{self.rng.randint(1, 9)}"
            yield f"{t:%Y-%m-%dT%H:%M:%S},{value}\n"
