"""Wearable streams as the ingestion API receives them: `DeviceBatch` JSON bodies.

Heart rate every minute (or every 5), steps per 15 minutes, a resting heart rate on
waking, and at night SDNN, SpO2, respiratory rate and sleep stages, on the member's
clock. This is the bulk of a cohort (a benchmark asks for millions of samples), so
samples are plain dicts with timestamps built by concatenation, a day at a time, and
faults are placed by drawing the gap to the next one rather than a random number per
sample."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import math
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from backend.ingest.formats.device_batch import MAX_SAMPLES
from backend.synth import episodes as ep
from backend.synth.manifest import Tally
from backend.synth.members import CohortSpec, Member, stream_rng
from backend.synth.timeline import (
    ASLEEP,
    CADENCE,
    DAY,
    Clock,
    Stage,
    day_states,
    hr_targets,
    iso,
    minute_suffixes,
    night_stages,
    plans,
)

HEART_RATE = "8867-4"
RESTING_HR = "40443-4"
STEPS = "55423-8"
HRV = "80404-7"
SPO2 = "59408-5"
RESPIRATORY_RATE = "9279-1"
SLEEP_STAGE = "x-rejuve:sleep-stage"

# Values outside the catalog's plausible range, as broken sensors report them: a heart
# rate of 0 when the strap loses contact, counters that wrapped below zero.
IMPLAUSIBLE: dict[str, tuple[float, ...]] = {
    HEART_RATE: (0, 300, 19),
    RESTING_HR: (0, 300),
    STEPS: (-1, -312),
    HRV: (0, 900),
    SPO2: (0, 12.5),
    RESPIRATORY_RATE: (0, 120),
    SLEEP_STAGE: (-5, 2000),
}
# Units with another dimension than the measure's: no conversion exists.
WRONG_UNITS = ("mm[Hg]", "kg")
# Far enough ahead that no refinement run will be that late, near enough that the API
# takes it (it refuses times more than a year ahead): a clock set months ahead.
FUTURE = dt.timedelta(days=180)

_GOOD, _BAD, _DUPLICATE = 0, 1, 2
_NEVER = sys.maxsize

Sample = dict[str, object]


@dataclass(frozen=True)
class BatchInfo:
    batch_id: str
    tally: Tally
    resend: bool  # the previous body again, byte for byte (a client retry)


def device_batches(
    spec: CohortSpec, member: Member, samples_per_batch: int = 500
) -> Iterator[bytes]:
    """The member's wearable data as API batch bodies, in time order."""
    for body, _ in device_stream(spec, member, samples_per_batch):
        yield body


def device_stream(
    spec: CohortSpec, member: Member, samples_per_batch: int = 500
) -> Iterator[tuple[bytes, BatchInfo]]:
    """`device_batches` with what each body holds, for the manifest."""
    if not 1 <= samples_per_batch <= MAX_SAMPLES:
        raise ValueError(f"samples_per_batch must be 1..{MAX_SAMPLES}, not {samples_per_batch}")
    faults = stream_rng(spec.seed, "device-faults", member.member_id)
    bad_gap = _gaps(faults, spec.bad_rate)
    dup_gap = _gaps(faults, spec.duplicate_rate)
    next_bad, next_dup = bad_gap(), dup_gap()
    produced = 0  # good samples generated so far; fault positions count in these
    buf: list[Sample] = []
    marks = bytearray()
    number = 0
    head = {"member_id": str(member.member_id), "device": member.device}

    def cut(size: int) -> Iterator[tuple[bytes, BatchInfo]]:
        nonlocal number
        number += 1
        batch_id = f"{member.short_id}-{number}"
        samples, kinds = buf[:size], marks[:size]
        del buf[:size], marks[:size]
        body = json.dumps(
            {"batch_id": batch_id, **head, "samples": samples}, separators=(",", ":")
        ).encode()
        bad = kinds.count(_BAD)
        tally = Tally(size, size, 0, bad, kinds.count(_DUPLICATE), 0)
        yield body, BatchInfo(batch_id, tally, resend=False)
        if faults.random() < spec.duplicate_rate:
            # A retry after a lost acknowledgement: the API lands the id once; landed by
            # other means, every good sample in it is a duplicate.
            again = Tally(size, size, 0, bad, size - bad, 0)
            yield body, BatchInfo(batch_id, again, resend=True)

    for day in _days(spec, member, stream_rng(spec.seed, "device", member.member_id)):
        tail, count = len(buf), len(day)
        buf.extend(day)
        marks.extend(bytes(count))
        while next_bad < produced + count:
            i = tail + next_bad - produced
            buf[i] = _spoil(buf[i], faults)
            marks[i] = _BAD
            next_bad += 1 + bad_gap()
        repeats: list[int] = []
        while next_dup < produced + count:
            i = tail + next_dup - produced
            if marks[i] == _GOOD:
                repeats.append(i)
            next_dup += 1 + dup_gap()
        for i in reversed(repeats):
            # The same reading sent twice by a sync that retried part of its queue.
            buf.insert(i + 1, buf[i])
            marks.insert(i + 1, _DUPLICATE)
        produced += count
        while len(buf) >= samples_per_batch:
            yield from cut(samples_per_batch)
    if buf:
        yield from cut(len(buf))


def _gaps(rng: random.Random, rate: float) -> Callable[[], int]:
    """Draws how many records pass before the next one picked at `rate` (geometric)."""
    if rate <= 0:
        return lambda: _NEVER
    if rate >= 1:
        return lambda: 0
    log_keep = math.log1p(-rate)
    return lambda: int(math.log(1.0 - rng.random()) / log_keep)


def _spoil(sample: Sample, rng: random.Random) -> Sample:
    bad = dict(sample)
    kind = rng.randrange(3)
    if kind == 0:
        bad["value"] = rng.choice(IMPLAUSIBLE[str(sample["code"])])
    elif kind == 1:
        bad["unit"] = rng.choice(WRONG_UNITS)
    else:
        # A watch whose clock reset to a far date.
        for key in ("start", "end"):
            if key in bad:
                bad[key] = iso(dt.datetime.fromisoformat(str(bad[key])) + FUTURE)
    return bad


def _days(spec: CohortSpec, member: Member, rng: random.Random) -> Iterator[list[Sample]]:
    """The good samples of each day of the timeline, in time order."""
    clock = Clock.of(spec, member)
    suffix = minute_suffixes(member.tz_offset_minutes)
    prefixes: dict[int, str] = {}

    def stamp(minute: int) -> str:
        day, rest = divmod(minute, DAY)
        prefix = prefixes.get(day)
        if prefix is None:
            prefix = prefixes[day] = clock.date(day).isoformat() + "T"
        return prefix + suffix[rest]

    gap_rng = stream_rng(spec.seed, "device-gaps", member.member_id)
    off = bytes(
        gap_rng.random() < spec.gap_rate for _ in range(clock.days.stop * 24)
    )  # one flag per axis hour: the device was off

    step = member.hr_every_minutes
    hr_unit, steps_unit, rr_unit = member.hr_unit, member.steps_unit, member.rr_unit
    alpha = 0.35 if step == 1 else 0.8  # how fast the heart follows the activity
    rnd = rng.random
    hr = member.resting_hr
    rr_base = 12.0 + 4.0 * rnd()

    days = plans(rng, member, clock.days.start - 1)
    previous, plan = next(days), next(days)
    stages: collections.deque[Stage] = collections.deque(
        night_stages(rng, (clock.days.start - 1) * DAY + previous.bed, plan.day * DAY + plan.wake)
    )

    def sleep(until: int, out: list[Sample]) -> None:
        while stages and stages[0].start < until:
            stage = stages.popleft()
            if stage.start >= clock.first and not off[stage.start // 60]:
                out.append(
                    {
                        "code": SLEEP_STAGE,
                        "value": stage.minutes,
                        "unit": "min",
                        "start": stamp(stage.start),
                        "end": stamp(stage.start + stage.minutes),
                        "qualifier": stage.qualifier,
                    }
                )

    injected = ep.episodes(spec, member)
    rest_rng = stream_rng(spec.seed, "device-resting-hr", member.member_id)
    for today in clock.days:
        # A night is made on the evening it starts, so tomorrow's plan (its wake time) is
        # drawn a day ahead.
        tomorrow = next(days)
        cut = ep.effect(injected, clock.date(tomorrow.day)).sleep_cut if injected else 0
        if cut:
            tomorrow = dataclasses.replace(tomorrow, wake=max(tomorrow.wake - cut, 60))
        today_effect = ep.effect(injected, clock.date(today)) if injected else ep.NONE
        stages.extend(night_stages(rng, today * DAY + plan.bed, (today + 1) * DAY + tomorrow.wake))
        states = day_states(plan)
        targets = [t + today_effect.rhr for t in hr_targets(member, plan)]
        hrv_ms = member.hrv_ms * today_effect.hrv
        base = today * DAY
        lo = max(clock.first - base, 0)
        lo = -(-lo // step) * step
        hi = min(clock.last - base, DAY)
        prefix = stamp(base)[:11]
        out: list[Sample] = []
        add = out.append
        for mod in range(lo, hi, step):
            minute = base + mod
            if stages and stages[0].start <= minute:
                sleep(minute + 1, out)
            if off[minute // 60]:
                continue
            state = states[mod]
            hr += (targets[state] - hr) * alpha + (rnd() - 0.5) * 6.0
            start = prefix + suffix[mod]
            add({"code": HEART_RATE, "value": round(hr), "unit": hr_unit, "start": start})
            if mod <= plan.wake < mod + step:
                # The watch's own estimate of the night's resting heart rate, on waking
                # (its own random stream: the other samples stay what they were).
                rest = member.resting_hr + today_effect.rhr + rest_rng.gauss(0, 1.5)
                add({"code": RESTING_HR, "value": round(rest), "unit": hr_unit, "start": start})
            if mod % 15 == 0:
                steps = sum(CADENCE[s] for s in states[mod : mod + 15])
                add(
                    {
                        "code": STEPS,
                        "value": int(steps * (0.75 + 0.5 * rnd())),
                        "unit": steps_unit,
                        "start": start,
                        "end": stamp(minute + 15),
                    }
                )
            if state == ASLEEP:
                if mod % 30 == 0:
                    spo2 = min(100, max(90, round(96.5 + (rnd() - 0.6) * 6)))
                    add({"code": SPO2, "value": spo2, "unit": "%", "start": start})
                elif mod % 30 == 10:
                    rr = round(rr_base + (rnd() - 0.5) * 2.0, 1)
                    add({"code": RESPIRATORY_RATE, "value": rr, "unit": rr_unit, "start": start})
                if mod % 60 == 20:
                    sdnn = round(hrv_ms * (0.75 + 0.5 * rnd()), 1)
                    add({"code": HRV, "value": sdnn, "unit": "ms", "start": start})
            elif mod % 120 == 0:
                spo2 = min(100, max(90, round(97.5 + (rnd() - 0.5) * 4)))
                add({"code": SPO2, "value": spo2, "unit": "%", "start": start})
        sleep(base + hi, out)
        plan = tomorrow
        yield out
