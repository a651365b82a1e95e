"""FHIR R4 JSON: a single Observation, or a Bundle (transaction, collection, batch,
searchset) whose entries carry Observations.

Each Observation is validated with fhir.resources. fhir.resources 8 ships R5 (the default
package), R4B (`fhir.resources.R4B`, FHIR 4.3.0) and STU3, but no R4 (4.0.1) models. We use
R4B: its Observation, Quantity, Period, Reference and Bundle are the R4 definitions
unchanged (R4B only reworked medication/product and subscription resources), whereas R5
changes Observation itself (new elements and value types), so R5 would judge R4 documents
by rules they were never written against.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, BinaryIO, Final

from fhir.resources.R4B.observation import Observation, ObservationComponent
from pydantic import ValidationError

from backend.ingest.catalog import is_loinc, lookup
from backend.ingest.model import (
    DATE_ONLY,
    Coded,
    FormatError,
    ParseReport,
    Rejected,
    Sample,
    date_only,
)

LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
BUNDLE_TYPES: Final = frozenset({"transaction", "collection", "batch", "searchset"})

# ObservationStatus is a *required* binding in R4, so an official validator rejects any
# other code; fhir.resources does not check bindings (its enum list even ends in "+").
OBSERVATION_STATUS: Final = frozenset(
    {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
# Valid, but they retract or never produced a result: not measurements to keep.
NOT_A_RESULT: Final = frozenset({"cancelled", "entered-in-error"})

# value[x] types kept as a coded result (a concept, a text, a yes/no), and the ones we
# cannot take as one result: an integer has no unit; a time, date, period, range, ratio or
# waveform is not a result we store.
CODED_VALUES: Final = ("valueCodeableConcept", "valueString", "valueBoolean")
UNSUPPORTED_VALUES: Final = (
    "valueInteger",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
)

Json = dict[str, Any]


# --- reading the file ------------------------------------------------------------------


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not a JSON number")


def _load(data: BinaryIO, name: str) -> object:
    try:
        text = data.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(f"not UTF-8 text (byte {exc.start})", name) from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        where = f"{name} line {exc.lineno} column {exc.colno}"
        raise FormatError(f"not JSON: {exc.msg}", where) from exc
    except ValueError as exc:
        raise FormatError(str(exc), name) from exc


def _resources(document: object, name: str) -> Iterator[tuple[str, object]]:
    """(locator, resource) for the Observation or each Bundle entry."""
    if not isinstance(document, dict):
        raise FormatError("not a FHIR resource (the top level is not an object)", name)
    kind = document.get("resourceType")
    if kind == "Observation":
        yield name, document
        return
    if kind != "Bundle":
        raise FormatError(f"expected a Bundle or an Observation, got {kind!r}", name)
    bundle_type = document.get("type")
    if bundle_type not in BUNDLE_TYPES:
        allowed = ", ".join(sorted(BUNDLE_TYPES))
        raise FormatError(f"Bundle type {bundle_type!r} is not one of {allowed}", name)
    entries = document.get("entry", [])
    if not isinstance(entries, list):
        raise FormatError("Bundle.entry is not a list", f"{name} entry")
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        yield f"{name} entry[{index}].resource", resource


# --- validation errors -----------------------------------------------------------------


def _path(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


_CHOICE_LIST = re.compile(r"\[([^\]]+)\]")


def _error_field(error: Any) -> str:
    field = _path(error["loc"])
    choices = _CHOICE_LIST.search(str(error["msg"]))
    if choices and error["type"] == "value_error" and "field value" in str(error["msg"]):
        # fhir.resources reports a choice-type conflict (two value[x]) on the parent
        # object, listing the alternatives: name the choice element itself.
        first = re.search(r"'([a-z]+)[A-Z]\w*'", choices.group(1))
        choice = f"{first.group(1)}[x]" if first else ""
        field = f"{field}.{choice}" if field else choice
    return field or "(resource)"


def _schema_invalid(exc: ValidationError, locator: str, record: Json) -> Rejected:
    errors = exc.errors()
    details = "; ".join(f"{_error_field(e)}: {e['msg']}" for e in errors[:5])
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return Rejected("schema_invalid", _error_field(errors[0]), details + more, locator, record)


# --- times -----------------------------------------------------------------------------


class _BadTime(ValueError):
    def __init__(self, reason: str, field: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.field = field


class _ImpreciseTime(Exception):
    """A valid FHIR partial date (year, or year-month): too vague to place a sample."""


def _moment(value: object, field: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        # FHIR requires an offset whenever a time is given; the plain `timezone` keeps
        # pydantic's own tzinfo class out of the samples.
        offset = value.utcoffset()
        if offset is None:
            raise _BadTime("bad_timestamp", field, f"{value.isoformat()} has no offset")
        return value.replace(tzinfo=dt.timezone(offset))
    if isinstance(value, dt.date):
        # A date-only dateTime ("2024-03-02") is valid FHIR and common for lab results:
        # the platform's one rule for date-only times (model.DATE_ONLY).
        return date_only(value)
    if isinstance(value, str):
        raise _ImpreciseTime
    raise _BadTime("bad_timestamp", field, f"unreadable time {value!r}")


def _stated_offset(value: object) -> int | None:
    if isinstance(value, dt.datetime) and (offset := value.utcoffset()) is not None:
        return int(offset.total_seconds() // 60)
    return None


def _is_date(value: object) -> bool:
    return isinstance(value, dt.date) and not isinstance(value, dt.datetime)


@dataclass(frozen=True, slots=True)
class _When:
    start: dt.datetime
    end: dt.datetime | None
    tz_offset_minutes: int | None
    date_only: bool = False


def _effective(obs: Observation) -> _When:
    if obs.effectiveDateTime is not None:
        raw: object = obs.effectiveDateTime
        start = _moment(raw, "effectiveDateTime")
        return _When(start, None, _stated_offset(raw), _is_date(raw))
    if obs.effectiveInstant is not None:
        raw = obs.effectiveInstant
        return _When(_moment(raw, "effectiveInstant"), None, _stated_offset(raw))
    if obs.effectivePeriod is not None:
        period = obs.effectivePeriod
        if period.start is None:
            raise _BadTime("missing_value", "effectivePeriod.start", "a period without start")
        start = _moment(period.start, "effectivePeriod.start")
        end = None if period.end is None else _moment(period.end, "effectivePeriod.end")
        if end is not None and end < start:
            raise _BadTime(
                "bad_timestamp", "effectivePeriod.end", "the period ends before it starts"
            )
        return _When(start, end, _stated_offset(period.start), _is_date(period.start))
    if obs.effectiveTiming is not None:
        raise _BadTime("bad_timestamp", "effectiveTiming", "a Timing schedule is not one time")
    raise _BadTime("missing_value", "effective[x]", "no effective time")


# --- codes and values ------------------------------------------------------------------


def _loinc_codes(concept: Any) -> list[str]:
    codings = getattr(concept, "coding", None) or []
    return [str(c.code) for c in codings if c.system == LOINC and c.code]


def _code(codes: list[str]) -> str | None:
    """The code a result is stored under, as the source wrote it: the first one the
    catalog knows (folding, 2708-6 -> 59408-5, happens in normalisation and is recorded
    on the row), else the first valid LOINC code (stored flagged uncatalogued)."""
    for code in codes:
        if lookup(code) is not None:
            return code
    return next((c for c in codes if is_loinc(c)), None)


def _code_label(codes: list[str]) -> str:
    return _code(codes) or (codes[0] if codes else "no-loinc")


@dataclass(frozen=True, slots=True)
class _Reading:
    code: str
    value: float | None
    unit: str
    locator: str
    coded: Coded | None = None


def _value_kind(element: Observation | ObservationComponent) -> str | None:
    for kind in ("valueQuantity", *CODED_VALUES, *UNSUPPORTED_VALUES):
        if getattr(element, kind, None) is not None:
            return kind
    return None


def _coded_value(element: Observation | ObservationComponent, kind: str) -> Coded | None:
    if kind == "valueBoolean":
        return Coded(boolean=bool(element.valueBoolean))
    if kind == "valueString":
        text = str(element.valueString).strip()
        return Coded(text=text) if text else None
    concept = element.valueCodeableConcept
    assert concept is not None  # `kind` says so
    codings = [c for c in (concept.coding or []) if c.code]
    if codings:
        # The first coding is the source's own choice (FHIR: the order is not meaningful,
        # but senders put their primary code first); its display, else the concept's text.
        first = codings[0]
        display = first.display or concept.text
        return Coded(str(first.code), first.system and str(first.system), display and str(display))
    return Coded(text=str(concept.text)) if concept.text else None


def _reading(
    element: Observation | ObservationComponent,
    prefix: str,
    locator: str,
    record: Json,
    report: ParseReport,
) -> _Reading | Rejected | None:
    """One coded value: a reading, a rejection, or None once counted as unmapped."""
    codes = _loinc_codes(element.code)
    kind = _value_kind(element)
    if kind is None:
        # An explicit dataAbsentReason (or nothing): a complete, valid observation with no
        # result; counted, not quarantined, since there is nothing for a steward to fix.
        report.unmapped[f"no-value:{_code_label(codes)}"] += 1
        return None
    if kind in UNSUPPORTED_VALUES:
        report.unmapped[f"unsupported-value:{kind}:{_code_label(codes)}"] += 1
        return None
    code = _code(codes)
    if code is None:
        report.unmapped[f"loinc:{codes[0]}" if codes else "no-loinc"] += 1
        return None
    if kind in CODED_VALUES:
        coded = _coded_value(element, kind)
        if coded is None:
            report.unmapped[f"no-value:{code}"] += 1
            return None
        return _Reading(code, None, "", locator, coded)
    quantity = element.valueQuantity
    field = f"{prefix}valueQuantity"
    if quantity is None or quantity.value is None:
        return Rejected(
            "missing_value", f"{field}.value", "a Quantity without a value", locator, record
        )
    if quantity.comparator is not None:
        # "<5" is a censored result, not the number 5: a steward decides what it means.
        return Rejected(
            "bad_value",
            f"{field}.comparator",
            f"censored value {quantity.comparator}{quantity.value}",
            locator,
            record,
        )
    unit = quantity.code if quantity.system == UCUM and quantity.code else quantity.unit
    if not unit:
        return Rejected(
            "missing_value", f"{field}.unit", "a Quantity without a unit", locator, record
        )
    value = quantity.value
    number = float(value) if isinstance(value, Decimal | int | float) else float(str(value))
    return _Reading(code, number, str(unit), locator)


def _readings(
    obs: Observation, locator: str, record: Json, report: ParseReport
) -> Iterator[_Reading | Rejected]:
    components = obs.component or []
    # A panel (85354-9 blood pressure) carries its numbers in components and has no
    # value of its own: the panel code is a container, not an unmapped measurement.
    if not components or _value_kind(obs) is not None or obs.dataAbsentReason is not None:
        result = _reading(obs, "", locator, record, report)
        if result is not None:
            yield result
    for index, component in enumerate(components):
        prefix = f"component[{index}]."
        result = _reading(component, prefix, f"{locator}.component[{index}]", record, report)
        if result is not None:
            yield result


# --- one resource ----------------------------------------------------------------------


def _source(obs: Observation) -> str:
    origin = obs.meta.source if obs.meta is not None else None
    if not origin and obs.device is not None:
        origin = obs.device.display
    return f"fhir:{origin or 'unknown'}"


def _observation(
    resource: Json, locator: str, report: ParseReport, own_patient: frozenset[str]
) -> Iterator[Sample | Rejected]:
    try:
        obs = Observation.model_validate(resource)
    except ValidationError as exc:
        yield _schema_invalid(exc, locator, resource)
        return
    status = str(obs.status)
    if status not in OBSERVATION_STATUS:
        yield Rejected(
            "schema_invalid", "status", f"{status!r} is not an ObservationStatus", locator, resource
        )
        return
    if status in NOT_A_RESULT:
        report.unmapped[f"status:{status}"] += 1
        return
    readings = list(_readings(obs, locator, resource, report))
    yield from (r for r in readings if isinstance(r, Rejected))
    good = [r for r in readings if isinstance(r, _Reading)]
    if not good:
        return
    try:
        when = _effective(obs)
    except _ImpreciseTime:
        report.unmapped["imprecise-time"] += len(good)
        return
    except _BadTime as exc:
        yield Rejected(exc.reason, exc.field, str(exc), locator, resource)
        return
    member = obs.subject.reference if obs.subject is not None else None
    if member is not None and str(member) in own_patient:
        # The bundle's own Patient (its urn:uuid fullUrl or id): the member this batch was
        # landed for, once `backend.identity.identifiers.resolve_bundle` has checked it at
        # the door. Not a platform member id, so no member_ref.
        member = None
    flags = (DATE_ONLY,) if when.date_only else ()
    for reading in good:
        yield Sample(
            code=reading.code,
            value=reading.value,
            unit=reading.unit,
            start=when.start,
            end=when.end,
            source=_source(obs),
            locator=reading.locator,
            tz_offset_minutes=when.tz_offset_minutes,
            member_ref=str(member) if member else None,
            coded=reading.coded,
            flags=flags,
        )


def _resource(
    resource: object, locator: str, report: ParseReport, own_patient: frozenset[str]
) -> Iterator[Sample | Rejected]:
    if resource is None:
        # A batch or transaction entry may be a bare request (a DELETE, a conditional read).
        report.unmapped["entry-without-resource"] += 1
        return
    if not isinstance(resource, dict):
        yield Rejected(
            "schema_invalid",
            "resource",
            "the resource is not a JSON object",
            locator,
            {"resource": resource},
        )
        return
    kind = resource.get("resourceType")
    if kind != "Observation":
        report.unmapped[str(kind) if kind else "no-resourceType"] += 1
        return
    yield from _observation(resource, locator, report, own_patient)


# --- the bundle's patient --------------------------------------------------------------


@dataclass(frozen=True)
class BundlePatient:
    """A Patient resource of a bundle: how the bundle's entries refer to it, and its
    identifiers (system, value) as the source stated them."""

    refs: frozenset[str]  # "urn:uuid:...", "Patient/<id>", the fullUrl
    identifiers: tuple[tuple[str, str], ...]


def _patient(entry: object) -> BundlePatient | None:
    if not isinstance(entry, dict):
        return None
    resource = entry.get("resource")
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        return None
    refs = set()
    if isinstance(full := entry.get("fullUrl"), str) and full:
        refs.add(full)
    if isinstance(pid := resource.get("id"), str) and pid:
        refs.update({f"Patient/{pid}", f"urn:uuid:{pid}"})
    found = []
    for ident in resource.get("identifier") or []:
        if not isinstance(ident, dict):
            continue
        system, value = ident.get("system"), ident.get("value")
        if isinstance(system, str) and isinstance(value, str) and system and value:
            found.append((system, value))
    return BundlePatient(frozenset(refs), tuple(found))


def _bundle_patients(document: object) -> list[BundlePatient]:
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        return []
    entries = document.get("entry")
    found = [_patient(e) for e in entries] if isinstance(entries, list) else []
    return [p for p in found if p is not None]


def bundle_patients(data: BinaryIO, name: str) -> list[BundlePatient]:
    """The Patient resources of a FHIR file (none for a single Observation): what the door
    resolves to a member before the file lands."""
    return _bundle_patients(_load(data, name))


def parse(data: BinaryIO, report: ParseReport, *, name: str) -> Iterator[Sample | Rejected]:
    """Samples from a FHIR R4 Observation or Bundle; see the module docstring."""
    document = _load(data, name)
    patients = _bundle_patients(document)
    # Entries that refer to the bundle's one Patient belong to the batch's member; with
    # several Patients nobody can say which is the member (the door refuses such a file).
    own = patients[0].refs if len(patients) == 1 else frozenset()
    for locator, resource in _resources(document, name):
        report.read += 1
        yield from _resource(resource, locator, report, own)
