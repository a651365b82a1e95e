"""The cohort's lab results as one CSV in the default `CsvMapping` layout
(member_id,loinc,value,unit,effective_at), one panel per member, `member_id` being the
member's UUID."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Mapping, Sequence

from backend.synth.faults import FUTURE, Faults, implausible, wrong_unit
from backend.synth.fhir import Shared
from backend.synth.manifest import Tally
from backend.synth.members import CohortSpec, Member, stream_rng
from backend.synth.timeline import iso, local_dates, spot

HEADER = "member_id,loinc,value,unit,effective_at\n"
# TSH: a valid LOINC code outside the catalog, stored as sent and flagged uncatalogued.
_NOT_IN_CATALOG = "3016-3"
_GLUCOSE_MG_PER_MMOL = 18.0156


def labs(
    spec: CohortSpec, cohort: Sequence[Member], shared: Mapping[uuid.UUID, list[Shared]]
) -> tuple[bytes, Tally]:
    faults = Faults(stream_rng(spec.seed, "csv-faults"), spec)
    tally = Tally()
    rows = [HEADER]
    for member in cohort:
        rng = stream_rng(spec.seed, "csv", member.member_id)
        drawn = _draw_time(spec, member, rng)
        if drawn is None:
            continue
        for code, value, unit in _panel(member, rng):
            tally.records += 1
            if code == _NOT_IN_CATALOG:
                tally.samples += 1
                rows.append(_row(member, code, _text(value), unit, drawn))
                continue
            text, when = _text(value), drawn
            if faults.bad():
                kind = faults.pick(("missing", "censored", "unit", "implausible", "future"))
                if kind in ("missing", "censored"):
                    # The parser rejects both: no value, or "<x" which is not the number x.
                    text = "" if kind == "missing" else f"<{text}"
                    tally.rejected += 1
                else:
                    tally.samples += 1
                    if kind == "unit":
                        unit = wrong_unit(code)
                    elif kind == "implausible":
                        text = _text(implausible(code))
                    else:
                        when = drawn + FUTURE
                tally.bad += 1
                rows.append(_row(member, code, text, unit, when))
                continue
            tally.samples += 1
            rows.append(_row(member, code, text, unit, when))
            if faults.duplicate():
                # The lab system sent the result twice (a corrected report, unchanged).
                tally.records += 1
                tally.samples += 1
                tally.duplicates += 1
                rows.append(rows[-1])
        for result in shared.get(member.member_id, []):
            if result.code != "29463-7" and faults.duplicate():
                # The clinic's lab also reports to us directly: a result already in FHIR.
                tally.records += 1
                tally.samples += 1
                tally.duplicates += 1
                rows.append(
                    _row(member, result.code, _text(result.value), result.unit, result.when)
                )
    return "".join(rows).encode(), tally


def _draw_time(spec: CohortSpec, member: Member, rng: random.Random) -> dt.datetime | None:
    """The first morning in the timeline, 07:00-07:55: before any clinic visit (08:00
    on), so no result here repeats a FHIR one unless on purpose."""
    minute = 7 * 60 + 5 * rng.randrange(12)
    for date in local_dates(spec, member):
        when = spot(spec, member, date, minute)
        if when is not None:
            return when
    return None


def _panel(member: Member, rng: random.Random) -> list[tuple[str, float, str]]:
    triglycerides = round(rng.uniform(60, 240))
    ldl = max(40, round(member.cholesterol - member.hdl - triglycerides / 5))
    glucose = round((member.glucose_mg_dl + rng.gauss(0, 5)) / _GLUCOSE_MG_PER_MMOL, 1)
    return [
        ("4548-4", round(member.hba1c + rng.gauss(0, 0.1), 1), "%"),
        ("2093-3", round(member.cholesterol + rng.gauss(0, 5)), "mg/dL"),
        ("2085-9", member.hdl, "mg/dL"),
        ("13457-7", ldl, "mg/dL"),
        ("2571-8", triglycerides, "mg/dL"),
        ("2160-0", round(rng.uniform(0.6, 1.2), 2), "mg/dL"),
        ("1988-5", round(rng.uniform(0.3, 5.0), 1), "mg/L"),
        ("718-7", round(rng.uniform(12.0, 16.5), 1), "g/dL"),
        ("15074-8", glucose, "mmol/L"),
        (_NOT_IN_CATALOG, round(rng.uniform(0.5, 4.0), 2), "mIU/L"),
    ]


def _text(value: float) -> str:
    # repr: the shortest text that reads back as the same float, as FHIR JSON has it.
    return str(value) if isinstance(value, int) else repr(float(value))


def _row(member: Member, code: str, value: str, unit: str, when: dt.datetime) -> str:
    return f"{member.member_id},{code},{value},{unit},{iso(when)}\n"
