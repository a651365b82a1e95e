"""A member's Garmin Connect export (`garmin`): the zip "Export Your Data" sends, with the
files and field names of a real `DI_CONNECT/` tree (see backend/ingest/formats/garmin.py):
daily summaries (UDS), sleep, body composition from a scale, summarized activities, and
files the platform does not read (heart-rate zones, the user profile).

Faults, at the cohort's rates: an implausible resting heart rate or weight (quarantined),
a daily summary whose GMT start is not a time and an activity whose two clocks disagree
by 7 minutes (rejected by the parser); a day summary repeated in a second, overlapping
UDS file (Garmin splits daily summaries into ~100-day files: duplicates); stress of -1
on some days (Garmin's "no data", counted unmapped). The member's FIT files can be
nested in the export as Garmin keeps them (`uploads`)."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.synth.faults import Faults, implausible
from backend.synth.fit_files import FitFile
from backend.synth.manifest import Tally
from backend.synth.members import CohortSpec, Member, stream_rng
from backend.synth.timeline import EXERCISE, local_dates, plans

ROOT = "DI_CONNECT"
_ZIP_TIME = (2026, 1, 1, 0, 0, 0)
# Garmin's numeric zone ids for the offsets the cohort uses (illustrative: the parser
# takes the offset from the two clocks, never from this id).
_ZONE_IDS = {0: 1, 60: 124, 120: 134, -300: 149, -480: 157, 330: 93, 540: 71}


@dataclass
class _Export:
    tally: Tally = field(default_factory=Tally)
    files: dict[str, Any] = field(default_factory=dict)

    def entry(
        self, samples: int, *, bad: int = 0, rejected: bool = False, unmapped: int = 0
    ) -> None:
        self.tally.records += 1
        if rejected:
            self.tally.rejected += 1
            self.tally.bad += 1
            return
        self.tally.samples += samples
        self.tally.bad += bad
        self.tally.unmapped += unmapped


def garmin_export(
    spec: CohortSpec, member: Member, uploads: Sequence[FitFile] = ()
) -> tuple[bytes, Tally]:
    """The zip and what parsing and refining it must come to. `uploads`: the member's
    FIT files, nested in `DI-Connect-Uploaded-Files/` as Garmin keeps them."""
    rng = stream_rng(spec.seed, "garmin", member.member_id)
    faults = Faults(stream_rng(spec.seed, "garmin-faults", member.member_id), spec)
    account = 100_000_000 + int(member.member_id.hex[:6], 16)
    out = _Export()
    days, repeated, sleeps, weights, activities = [], [], [], [], []
    first_day = (spec.start.astimezone(member.tz).date() - dt.date(1970, 1, 1)).days
    day_plans = plans(rng, member, first_day)
    for date in local_dates(spec, member):
        plan = next(day_plans)
        midnight = dt.datetime.combine(date, dt.time(), tzinfo=member.tz)
        if spec.start <= midnight and midnight + dt.timedelta(days=1) <= spec.end:
            entry, good = _daily(rng, faults, out, member, date, midnight, account)
            days.append(entry)
            if good and faults.duplicate():
                repeated.append(entry)
                out.entry(good)
                out.tally.duplicates += good
        bed = midnight + dt.timedelta(minutes=plan.bed)
        wake = bed + dt.timedelta(minutes=rng.randrange(400, 540))
        if spec.start <= bed and wake < spec.end:
            sleeps.append(_sleep(rng, out, date, bed, wake))
        elif rng.random() < 0.5:
            sleeps.append({"calendarDate": date.isoformat()})  # no sleep recorded that day
            out.entry(0, unmapped=1)
        weighed = midnight + dt.timedelta(minutes=plan.wake + 10, seconds=rng.randrange(31, 60))
        if spec.start <= weighed < spec.end:
            weights.append(_weight(rng, faults, out, member, date, weighed))
        for bout in plan.bouts:
            begin = midnight + dt.timedelta(minutes=bout.start, seconds=rng.randrange(31, 60))
            end = begin + dt.timedelta(minutes=bout.end - bout.start)
            if bout.state == EXERCISE and spec.start <= begin and end < spec.end:
                activities.append(
                    _activity(rng, faults, out, member, bout.activity, begin, end, account)
                )
    weights.append(
        {
            "metaData": {"calendarDate": spec.start.date().isoformat() + "T00:00:00.0"},
            "lactateThresholdHeartRate": 168,
        }
    )
    out.entry(0, unmapped=1)
    first, last = spec.start.date(), spec.end.date()
    files: dict[str, Any] = {
        f"{ROOT}/DI-Connect-Aggregator/UDSFile_{first}_{last}.json": days,
        f"{ROOT}/DI-Connect-Wellness/{account}_sleepData.json": sleeps,
        f"{ROOT}/DI-Connect-Wellness/{account}_userBioMetrics.json": weights,
        f"{ROOT}/DI-Connect-Fitness/{account}_0_summarizedActivities.json": [
            {"summarizedActivitiesExport": activities}
        ],
        f"{ROOT}/DI-Connect-Wellness/{account}_heartRateZones.json": [
            {"sport": "DEFAULT", "zone1Floor": 98, "zone2Floor": 118, "zone3Floor": 137}
        ],
        f"{ROOT}/DI-Connect-User/user_profile.json": {"userName": "synthetic", "locale": "en"},
    }
    out.tally.unmapped += 2  # the two files above that the platform does not read
    if repeated:
        files[f"{ROOT}/DI-Connect-Aggregator/UDSFile_{last}_{last}.json"] = repeated
    if uploads:
        # Garmin names them after the account's e-mail and the activity id.
        nested = {
            f"{member.short_id}@example.com_{20_000_000_000 + n}.fit": fit.data
            for n, fit in enumerate(uploads)
        }
        files[f"{ROOT}/DI-Connect-Uploaded-Files/UploadedFiles_0-_Part1.zip"] = _zip(nested)
        for fit in uploads:
            out.tally.add(fit.tally)
    return _zip(files), out.tally


def _gmt(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds") + ".0"


def _local(moment: dt.datetime) -> str:
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + ".0"


def _millis(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _daily(
    rng: random.Random,
    faults: Faults,
    out: _Export,
    member: Member,
    date: dt.date,
    midnight: dt.datetime,
    account: int,
) -> tuple[dict[str, Any], int]:
    """A UDS entry and how many good samples it gives (0 if rejected)."""
    end = midnight + dt.timedelta(days=1)
    steps = rng.randrange(2500, 16000)
    resting = round(member.resting_hr + rng.gauss(0, 2))
    stress = rng.randrange(15, 55) if rng.random() > 0.1 else -1
    entry: dict[str, Any] = {
        "userProfilePK": account,
        "calendarDate": date.isoformat(),
        "uuid": f"{rng.getrandbits(128):032x}",
        "durationInMilliseconds": 86_400_000,
        "totalSteps": steps,
        "totalDistanceMeters": round(steps * 0.78),
        "activeKilocalories": float(rng.randrange(200, 900)),
        "bmrKilocalories": float(round(member.weight_kg * 22)),
        "wellnessKilocalories": None,
        "minHeartRate": resting - 5,
        "maxHeartRate": resting + rng.randrange(60, 100),
        "restingHeartRate": resting,
        "wellnessStartTimeGmt": _gmt(midnight),
        "wellnessStartTimeLocal": _local(midnight),
        "wellnessEndTimeGmt": _gmt(end),
        "wellnessEndTimeLocal": _local(end),
        "allDayStress": {
            "aggregatorList": [
                {"type": "TOTAL", "averageStressLevel": stress, "maxStressLevel": 90},
                {"type": "AWAKE", "averageStressLevel": stress, "maxStressLevel": 90},
            ]
        },
    }
    if faults.bad():
        if faults.pick(("implausible", "rejected")) == "rejected":
            entry["wellnessStartTimeGmt"] = "yesterday"
            out.entry(0, rejected=True)
            return entry, 0
        entry["restingHeartRate"] = implausible("40443-4")
        samples = 5 + (stress >= 0)
        out.entry(samples, bad=1, unmapped=int(stress < 0))
        return entry, 0
    samples = 5 + (stress >= 0)
    out.entry(samples, unmapped=int(stress < 0))
    return entry, samples


def _sleep(
    rng: random.Random, out: _Export, date: dt.date, bed: dt.datetime, wake: dt.datetime
) -> dict[str, Any]:
    total = int((wake - bed).total_seconds())
    deep = rng.randrange(3000, 6000)
    rem = rng.randrange(4000, 7000)
    awake = rng.randrange(300, 1500)
    light = total - deep - rem - awake
    out.entry(4 + 1 + 1)  # four stages, the night's sleep time, respiration
    return {
        "sleepStartTimestampGMT": _gmt(bed),
        "sleepEndTimestampGMT": _gmt(wake),
        "calendarDate": (date + dt.timedelta(days=1)).isoformat(),
        "sleepWindowConfirmationType": "ENHANCED_CONFIRMED_FINAL",
        "deepSleepSeconds": deep,
        "lightSleepSeconds": light,
        "remSleepSeconds": rem,
        "awakeSleepSeconds": awake,
        "unmeasurableSeconds": 0,
        "averageRespiration": round(rng.uniform(12, 17), 1),
        "lowestRespiration": 9.0,
        "highestRespiration": 21.0,
        "retro": False,
        "awakeCount": rng.randrange(0, 4),
    }


def _weight(
    rng: random.Random, faults: Faults, out: _Export, member: Member, date: dt.date, at: dt.datetime
) -> dict[str, Any]:
    kg = member.weight_kg + rng.gauss(0, 0.3)
    grams = round(kg * 1000)
    bad = faults.bad()
    if bad:
        grams = round(implausible("29463-7") * 1000)
    out.entry(3, bad=int(bad))
    return {
        "version": 1,
        "metaData": {"calendarDate": f"{date.isoformat()}T00:00:00.0", "sequence": 1},
        "weight": {
            "weight": float(grams),
            "bodyFat": round(rng.uniform(14, 32), 1),
            "bmi": round(kg / (member.height_cm / 100) ** 2, 1),
            "sourceType": "INDEX_SCALE",
            "timestampGMT": _gmt(at),
        },
    }


def _activity(
    rng: random.Random,
    faults: Faults,
    out: _Export,
    member: Member,
    kind: str,
    begin: dt.datetime,
    end: dt.datetime,
    account: int,
) -> dict[str, Any]:
    duration_ms = _millis(end) - _millis(begin)
    metres = (
        {"running": 2.8, "cycling": 6.5, "rowing": 3.2, "hiking": 1.3}.get(kind, 2.0)
        * duration_ms
        / 1000
    )
    local_ms = _millis(begin) + member.tz_offset_minutes * 60_000
    if faults.bad():
        local_ms += 7 * 60_000  # two clocks 7 minutes apart: no offset, refused
        out.entry(0, rejected=True)
    else:
        out.entry(3)
    return {
        "activityId": rng.randrange(10**9, 10**10),
        "name": f"{kind.title()}",
        "activityType": kind,
        "sportType": kind.upper(),
        "userProfileId": account,
        "timeZoneId": _ZONE_IDS.get(member.tz_offset_minutes, 1),
        "beginTimestamp": _millis(begin),
        "startTimeGmt": float(_millis(begin)),
        "startTimeLocal": float(local_ms),
        "duration": float(duration_ms),
        "elapsedDuration": float(duration_ms),
        "distance": round(metres * 100, 1),
        "avgHr": float(round(member.resting_hr + 70)),
        "maxHr": float(round(member.resting_hr + 100)),
        "calories": float(round(duration_ms / 6000)),
    }


def _zip(files: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            body = files[path]
            archive.writestr(info, body if isinstance(body, bytes) else json.dumps(body, indent=1))
    return buffer.getvalue()
