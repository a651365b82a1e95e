"""One parsed sample -> one observation in canonical units, or a reason to quarantine it."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import uuid
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import NamedTuple

from backend.ingest.catalog import UNCATALOGUED, is_loinc, lookup
from backend.ingest.model import Coded, Sample
from backend.refine.units import UnitError, conversion_for, ucum_unit

# Device clocks drift; a sample a little ahead of ours is not "from the future".
CLOCK_SKEW = dt.timedelta(minutes=5)
# No measurement we hold predates this (a heart rate dated 0001-01-01 is a broken clock).
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)


class Observation(NamedTuple):
    """A NamedTuple for the same reason as Sample: one per sample on the hot path."""

    member_id: uuid.UUID
    observed_at: dt.datetime
    ended_at: dt.datetime | None
    code: str
    value: float | None
    unit: str
    source: str
    qualifier: str | None
    tz_offset_minutes: int | None
    quality_flags: list[str]
    dedup_key: bytes
    # A result that is not a number (value None): processed.observations.value_code,
    # value_system, value_text, value_boolean (migration 0015).
    coded: Coded | None = None


@dataclass(frozen=True, slots=True)
class Quarantined:
    reason: str
    field: str | None
    detail: str
    locator: str
    record: dict[str, object] = dc_field(repr=False)


def sample_record(s: Sample) -> dict[str, object]:
    """The sample as the steward sees it in the quarantine (and `quarantine.release`
    reads back)."""
    record: dict[str, object] = {
        "code": s.code,
        "value": s.value,
        "unit": s.unit,
        "start": s.start.isoformat(),
        "end": s.end.isoformat() if s.end else None,
        "source": s.source,
        "qualifier": s.qualifier,
        "tz_offset_minutes": s.tz_offset_minutes,
    }
    if s.coded is not None:
        record.update(
            value_code=s.coded.code,
            value_system=s.coded.system,
            value_text=s.coded.text,
            value_boolean=s.coded.boolean,
        )
    if s.flags:
        record["flags"] = list(s.flags)
    return record


def dedup_key(
    member: uuid.UUID,
    code: str,
    start: dt.datetime,
    end: dt.datetime | None,
    qualifier: str | None,
    value: float | None,
    coded: Coded | None = None,
) -> bytes:
    # Rounded, so the same measurement converted along two paths (lb vs kg) still matches.
    # (Milliseconds and 6 significant digits; this runs once per sample, so no str(uuid).)
    # A coded result is keyed by what it says (system, code, text, boolean).
    h = hashlib.blake2b(member.bytes, digest_size=16)
    said = (
        f"{value:.6g}"
        if value is not None
        else "coded:" + "|".join("" if part is None else str(part) for part in (coded or Coded()))
    )
    h.update(
        f"|{code}|{start.timestamp():.3f}|{end.timestamp() if end else ''}|"
        f"{qualifier or ''}|{said}".encode()
    )
    return h.digest()


def _quarantine(s: Sample, reason: str, fld: str, detail: str) -> Quarantined:
    return Quarantined(reason, fld, detail, s.locator, sample_record(s))


def _stated_member(ref: str | None) -> uuid.UUID | None:
    """A subject reference that names a platform member id ("Patient/<uuid>", "urn:uuid:...",
    a bare UUID); None when it names something else (a lab's own patient number)."""
    if not ref:
        return None
    tail = ref.rsplit("/", 1)[-1].removeprefix("urn:uuid:")
    try:
        return uuid.UUID(tail)
    except ValueError:
        return None


def _storable(text: str) -> bool:
    """PostgreSQL text holds no NUL and no lone surrogate."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def normalise(s: Sample, member: uuid.UUID, now: dt.datetime) -> Observation | Quarantined:
    stated = _stated_member(s.member_ref)
    if stated is not None and stated != member:
        # A file uploaded for one member must not slip another member's data in. The
        # record keeps the member it named (member_ref: shown on the host by `rejuve
        # quarantine show`, withheld from the steward's HTTP view, never logged).
        return Quarantined(
            "member_mismatch",
            "subject",
            "the record names another member (member_ref) than the one it was uploaded for",
            s.locator,
            {**sample_record(s), "member_ref": str(stated)},
        )
    for name in ("code", "unit", "source", "qualifier"):
        text = getattr(s, name)
        if text is not None and not _storable(text):
            return _quarantine(
                s, "unstorable_text", name, "contains a NUL character or invalid Unicode"
            )
    if s.coded is not None:
        for name in ("code", "system", "text"):
            text = getattr(s.coded, name)
            if text is not None and not _storable(text):
                return _quarantine(
                    s, "unstorable_text", f"value_{name}", "contains a NUL or invalid Unicode"
                )
    measure = lookup(s.code)
    if measure is None and not is_loinc(s.code):
        return _quarantine(s, "unknown_code", "code", f"code '{s.code}' is not in the catalog")
    if s.coded is None and (s.value is None or not math.isfinite(s.value)):
        return _quarantine(s, "bad_value", "value", f"value {s.value!r} is not a finite number")
    if s.coded is not None and not any(part is not None for part in s.coded):
        return _quarantine(s, "missing_value", "value", "a coded result with nothing in it")
    if s.start.tzinfo is None:
        return _quarantine(s, "bad_timestamp", "start", "timestamp has no time zone")
    if s.start < EARLIEST or (s.end is not None and s.end < EARLIEST):
        return _quarantine(
            s,
            "implausible_time",
            "start" if s.start < EARLIEST else "end",
            f"before {EARLIEST:%Y-%m-%d}: not a plausible measurement time",
        )
    if s.start > now + CLOCK_SKEW:
        return _quarantine(
            s,
            "future_timestamp",
            "start",
            f"{s.start.isoformat()} is later than the time of refinement",
        )
    if s.end is not None and s.end < s.start:
        return _quarantine(s, "bad_interval", "end", "interval ends before it starts")
    if measure is None:
        return _uncatalogued(s, member)
    if s.coded is not None:
        if measure.value_type != "coded":
            # Every reader of a numeric code (rollups, flags, features) counts on a number.
            return _quarantine(
                s, "bad_value", "value", f"{measure.name} is a number; got a coded or text result"
            )
        return _observation(s, member, measure.code, None, measure.unit, [])
    if measure.value_type == "coded":
        return _quarantine(
            s, "bad_value", "value", f"{measure.name} is a coded result, not a number"
        )
    assert s.value is not None  # checked above: a sample without `coded` has a number
    try:
        conv = conversion_for(s.unit, measure.code)
    except UnitError as e:
        return _quarantine(s, "unit_not_convertible", "unit", str(e))
    value = conv.apply(s.value)
    if not measure.low <= value <= measure.high:
        return _quarantine(
            s,
            "implausible",
            "value",
            f"{measure.name} {value:.6g} {measure.unit} is outside "
            f"{measure.low:g}-{measure.high:g} {measure.unit}",
        )
    flags = [] if (conv.factor == 1 and conv.offset == 0) else ["unit_converted"]
    return _observation(s, member, measure.code, value, measure.unit, flags)


def _uncatalogued(s: Sample, member: uuid.UUID) -> Observation | Quarantined:
    """A LOINC code the catalog does not hold: stored as sent, flagged, no range check.
    A number needs a valid UCUM unit (the only thing that makes it comparable later)."""
    if s.coded is not None:
        return _observation(s, member, s.code, None, "", [UNCATALOGUED])
    assert s.value is not None
    try:
        unit = ucum_unit(s.unit)
    except UnitError as e:
        return _quarantine(s, "unit_not_convertible", "unit", str(e))
    return _observation(s, member, s.code, s.value, unit, [UNCATALOGUED])


def _observation(
    s: Sample,
    member: uuid.UUID,
    code: str,
    value: float | None,
    unit: str,
    flags: list[str],
) -> Observation:
    start = s.start.astimezone(dt.UTC)
    end = s.end.astimezone(dt.UTC) if s.end else None
    if code != s.code:
        flags.append(f"code_from:{s.code}")  # a folded code (2708-6 -> 59408-5)
    flags.extend(s.flags)
    return Observation(
        member_id=member,
        observed_at=start,
        ended_at=end,
        code=code,
        value=value,
        unit=unit,
        source=s.source,
        qualifier=s.qualifier,
        tz_offset_minutes=s.tz_offset_minutes,
        quality_flags=flags,
        dedup_key=dedup_key(member, code, start, end, s.qualifier, value, s.coded),
        coded=s.coded,
    )
