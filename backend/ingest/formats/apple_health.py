"""Apple Health export ("Export All Health Data": `export.zip`, `export.xml`), streamed.

The export is one `<HealthData>` element whose children are `ExportDate`, `Me`, then the
data: `Record`, `Correlation`, `Workout`, `ActivitySummary` (and, from some phones,
`ClinicalRecord`, `Audiogram`, `VisionPrescription`). Exports reach several GB, so the
parser only ever holds the elements of the block of input it is reading, never the tree.

`report.read` counts the data children of `<HealthData>` (every child but `ExportDate` and
`Me`). Each one becomes a `Sample`, a `Rejected`, an `unmapped` count, or nothing when it is
a blood-pressure correlation or a second copy of a blood-pressure reading (see
`_State.first_sighting`).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol
from xml.etree.ElementTree import Element, ParseError, TreeBuilder
from xml.parsers import expat

# defusedxml ships no type information; "unused-ignore" keeps mypy quiet once stubs arrive.
from defusedxml import DefusedXmlException  # type: ignore[import-untyped, unused-ignore]
from defusedxml.ElementTree import (  # type: ignore[import-untyped, unused-ignore]
    DefusedXMLParser,
    iterparse,
)

from backend.ingest.model import FormatError, ParseReport, Rejected, Sample

_QUANTITY_CODES: dict[str, str] = {
    "HKQuantityTypeIdentifierHeartRate": "8867-4",
    "HKQuantityTypeIdentifierRestingHeartRate": "40443-4",
    "HKQuantityTypeIdentifierWalkingHeartRateAverage": "x-rejuve:walking-heart-rate-average",
    "HKQuantityTypeIdentifierHeartRateVariabilitySDNN": "80404-7",
    "HKQuantityTypeIdentifierStepCount": "55423-8",
    "HKQuantityTypeIdentifierDistanceWalkingRunning": "x-rejuve:distance",
    "HKQuantityTypeIdentifierActiveEnergyBurned": "41981-2",
    "HKQuantityTypeIdentifierBasalEnergyBurned": "x-rejuve:basal-energy",
    "HKQuantityTypeIdentifierBodyMass": "29463-7",
    "HKQuantityTypeIdentifierHeight": "8302-2",
    "HKQuantityTypeIdentifierBodyFatPercentage": "41982-0",
    "HKQuantityTypeIdentifierBodyMassIndex": "39156-5",
    "HKQuantityTypeIdentifierBloodPressureSystolic": "8480-6",
    "HKQuantityTypeIdentifierBloodPressureDiastolic": "8462-4",
    "HKQuantityTypeIdentifierBloodGlucose": "2339-0",
    "HKQuantityTypeIdentifierOxygenSaturation": "59408-5",
    "HKQuantityTypeIdentifierRespiratoryRate": "9279-1",
    "HKQuantityTypeIdentifierBodyTemperature": "8310-5",
}

# HealthKit stores percentages as fractions and the export writes the fraction with unit
# "%" (body fat 25.3 % is value="0.253"). Downstream "%" means percent, so these are scaled
# by 100 here, where we still know the number is Apple's fraction.
_FRACTIONS = frozenset(
    {"HKQuantityTypeIdentifierBodyFatPercentage", "HKQuantityTypeIdentifierOxygenSaturation"}
)

_BLOOD_PRESSURE = frozenset(
    {
        "HKQuantityTypeIdentifierBloodPressureSystolic",
        "HKQuantityTypeIdentifierBloodPressureDiastolic",
    }
)
_BLOOD_PRESSURE_CORRELATION = "HKCorrelationTypeIdentifierBloodPressure"

_SLEEP = "HKCategoryTypeIdentifierSleepAnalysis"
_SLEEP_STAGES: dict[str, str] = {
    "HKCategoryValueSleepAnalysisInBed": "in_bed",
    # Before iOS 16 a watch could only tell "asleep"; iOS 16 renamed that value
    # AsleepUnspecified and added the stages.
    "HKCategoryValueSleepAnalysisAsleep": "asleep",
    "HKCategoryValueSleepAnalysisAsleepUnspecified": "asleep",
    "HKCategoryValueSleepAnalysisAsleepCore": "asleep_core",
    "HKCategoryValueSleepAnalysisAsleepDeep": "asleep_deep",
    "HKCategoryValueSleepAnalysisAsleepREM": "asleep_rem",
    "HKCategoryValueSleepAnalysisAwake": "awake",
}

_WORKOUT_PREFIX = "HKWorkoutActivityType"
_SECONDS_PER_UNIT: dict[str, float] = {"ms": 0.001, "s": 1, "min": 60, "hr": 3600, "d": 86400}

_NOT_DATA = frozenset({"ExportDate", "Me"})

_STAMP_LENGTH = len("2024-03-02 07:15:00 +0100")
_MINUTE = dt.timedelta(minutes=1)
_Span = tuple[dt.datetime, dt.datetime]  # start, end; end is never before start
# Exports write numbers with a "." whatever the phone's locale. "72,5" is therefore not a
# number Apple wrote, and neither are "nan", "1_000" or " 72", which float() would take.
_NUMBER_CHARACTERS = frozenset("0123456789.+-eE")
_DEVICE_NAME = re.compile(r"[<,]\s*name:([^,>]+)")

_HEAD_BYTES = 64 * 1024  # Apple's DTD is ~10 KB; the internal subset must end within this
_DECLARATIONS_ONLY = re.compile(rb"<!DOCTYPE\s+HealthData\s*\[(.*?)\]\s*>", re.DOTALL)
# XML 1.0 forbids C0 controls other than tab, LF and CR. In UTF-8 (all Apple writes) these
# bytes never occur inside another character, so mapping them to spaces changes nothing else.
_CONTROLS = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])
_CONTROLS_TO_SPACE = bytes.maketrans(_CONTROLS, b" " * len(_CONTROLS))

# What one export may cost. Expat re-scans a token (an attribute value, a text node) from
# its start for every block of input that does not finish it, so one long token costs
# quadratic time (a 16 MiB attribute: 34 s; 256 MiB: hours). Apple writes short attribute
# values and no long text, so a run of 1 MiB without a `<` or `>` is refused outright, and
# a child of <HealthData> may hold at most this many elements (a Record's metadata).
MAX_TOKEN_BYTES = 1024 * 1024
MAX_RECORD_ELEMENTS = 10_000

_TRUNCATED = frozenset(
    expat.errors.codes[message]
    for message in (
        expat.errors.XML_ERROR_NO_ELEMENTS,
        expat.errors.XML_ERROR_UNCLOSED_TOKEN,
        expat.errors.XML_ERROR_PARTIAL_CHAR,
    )
)


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def parse(
    data: BinaryIO, report: ParseReport, *, name: str = "export.xml"
) -> Iterator[Sample | Rejected]:
    """Stream the samples of one `export.xml`; `name` goes into locators and errors.

    Raises `FormatError` when the input turns out not to be an Apple Health export, which
    may happen after samples were yielded (a truncated file is only found out at its end).
    """
    yield from _parse_stream(data, report, name)


def parse_path(path: Path, report: ParseReport) -> Iterator[Sample | Rejected]:
    """Stream an `export.xml`, or the export inside an `export.zip` (read in place)."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        yield from parse_zip(path, report, name=path.name)
    elif suffix == ".xml":
        with path.open("rb") as data:
            yield from _parse_stream(data, report, path.name)
    else:
        raise FormatError("expected an Apple Health export.zip or export.xml", path.name)


def parse_zip(
    source: Path | BinaryIO, report: ParseReport, *, name: str = "export.zip"
) -> Iterator[Sample | Rejected]:
    """The export inside an `export.zip`, from a path or a seekable file (the refiner's
    decrypting reader), streamed without extracting it."""
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile as err:
        raise FormatError(f"not a zip archive ({err})", name) from err
    with archive:
        member = _export_member(archive, name)
        name = f"{name}/{member.filename}"
        try:
            with archive.open(member) as data:
                yield from _parse_stream(data, report, name)
        except (zipfile.BadZipFile, zlib.error, EOFError) as err:
            raise FormatError(f"damaged zip archive ({err})", name) from err


def _export_member(archive: zipfile.ZipFile, where: str) -> zipfile.ZipInfo:
    candidates = [info for info in archive.infolist() if _is_export_xml(info)]
    if len(candidates) != 1:
        found = ", ".join(info.filename for info in candidates) or "none"
        raise FormatError(f"expected one apple_health_export/export.xml, found: {found}", where)
    return candidates[0]


def _is_export_xml(info: zipfile.ZipInfo) -> bool:
    """The export's main document: the XML file at the top of the archive or its folder.

    Its name is localised (a German phone writes `Exportieren.xml`); the one other XML file
    there is the clinical document, `export_cda.xml`. Routes and ECGs sit in subfolders;
    `._*` files are macOS resource forks, added when the archive is re-zipped on a Mac.
    """
    member = PurePosixPath(info.filename)
    return (
        not info.is_dir()
        and len(member.parts) <= 2
        and member.suffix.lower() == ".xml"
        and not member.name.lower().endswith("_cda.xml")
        and not member.name.startswith("._")
    )


def _parse_stream(source: _Readable, report: ParseReport, name: str) -> Iterator[Sample | Rejected]:
    tracker = _LineTracker(name)
    state = _State(name, report)
    events = iterparse(_Sanitised(source, name), events=("end",), parser=tracker.parser)
    try:
        for _event, element in events:
            child = tracker.finished(element)
            if child is None:
                continue
            if child.element.tag == "Correlation":
                yield from _correlation(child, state)
            else:
                outcome = _data_element(child, state)
                if outcome is not None:
                    yield outcome
            tracker.release(child)
    except ParseError as err:
        raise _not_well_formed(err, name) from err
    except DefusedXmlException as err:
        message = f"not an Apple Health export: it declares XML entities ({err})"
        raise FormatError(message, tracker.where()) from err


def _not_well_formed(err: ParseError, name: str) -> FormatError:
    line, column = err.position
    hint = " (the file ends early: truncated?)" if err.code in _TRUNCATED else ""
    reason = expat.ErrorString(err.code)
    return FormatError(
        f"not readable as XML: {reason} at column {column}{hint}", f"{name} line {line}"
    )


@dataclass(slots=True)
class _Child:
    """A child of `<HealthData>` and the lines where it and its `<Record>`s start."""

    element: Element
    line: int
    record_lines: tuple[int, ...] = ()  # grows only inside correlations, so no list each


class _LineTracker:
    """The target of its own defused parser: builds elements as TreeBuilder does and notes
    the line where each child of the root starts.

    iterparse hands out an element once it has parsed the whole 16 KiB block around it,
    when the parser's position is already further on; the target is called while the
    parser stands on the tag, so this is where lines can be read cheaply.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._elements = 0  # in the child of the root being read
        self._builder = TreeBuilder()
        self.parser = DefusedXMLParser(target=self)
        self._expat: expat.XMLParserType = self.parser.parser
        self._depth = 0
        self._root: Element | None = None
        self._open: deque[_Child] = deque()

    def where(self) -> str:
        return f"{self._name} line {self._expat.CurrentLineNumber}"

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        element = self._builder.start(tag, attrs)
        if self._depth == 0:
            self._check_root(element)
        elif self._depth == 1:
            self._open.append(_Child(element, self._expat.CurrentLineNumber))
            self._elements = 0
        else:
            self._elements += 1
            if self._elements > MAX_RECORD_ELEMENTS:
                raise FormatError(
                    f"a <{self._open[-1].element.tag}> holds more than "
                    f"{MAX_RECORD_ELEMENTS:,} elements: refused (no export record is this large)",
                    self.where(),
                )
            if self._depth == 2 and tag == "Record":
                self._open[-1].record_lines += (self._expat.CurrentLineNumber,)
        self._depth += 1
        return element

    def end(self, tag: str) -> Element:
        self._depth -= 1
        return self._builder.end(tag)

    def close(self) -> Element:
        return self._builder.close()

    def _check_root(self, root: Element) -> None:
        if root.tag != "HealthData":
            raise FormatError(
                f"not an Apple Health export: the root element is <{root.tag}>, "
                "expected <HealthData>",
                self.where(),
            )
        self._root = root

    def finished(self, element: Element) -> _Child | None:
        """The child of the root that `element` is, or None for any other element.

        Children of the root do not nest, so they end in the order they started."""
        if self._open and self._open[0].element is element:
            return self._open.popleft()
        return None

    def release(self, child: _Child) -> None:
        # Later siblings already parsed go too: the event queue still holds them.
        child.element.clear()
        if self._root is not None:
            del self._root[:]


class _Sanitised:
    """The export as the parser should see it: two defects of real exports removed.

    - iOS 16 (HealthKit export version 12) writes an internal DTD subset with unterminated
      `<!ATTLIST` declarations, which no XML parser accepts. Nothing needs the declarations
      (the parser does not validate, Apple declares no attribute defaults), so a subset of
      declarations only is replaced by the newlines it spanned: line numbers stay true. A
      subset that declares entities is left alone for the parser to refuse.
    - Some apps write control characters (U+000B) into names and metadata; see _CONTROLS.

    The first read returns the whole head of the file, whatever size was asked for.
    It also refuses a token longer than MAX_TOKEN_BYTES before the parser sees it (see
    there): `_run` counts the bytes since the last `<` or `>`.
    """

    def __init__(self, raw: _Readable, name: str) -> None:
        self._raw = raw
        self._name = name
        self._started = False
        self._run = 0
        self._offset = 0

    def read(self, size: int = -1, /) -> bytes:
        if self._started:
            chunk = self._raw.read(size)
        else:
            self._started = True
            chunk = _blank_declarations(_read_head(self._raw))
        self._guard(chunk)
        self._offset += len(chunk)
        return chunk.translate(_CONTROLS_TO_SPACE)

    def _guard(self, chunk: bytes) -> None:
        first = min((i for i in (chunk.find(b"<"), chunk.find(b">")) if i >= 0), default=-1)
        if first < 0:
            self._run += len(chunk)
        else:
            self._run += first
            if self._run <= MAX_TOKEN_BYTES and len(chunk) > MAX_TOKEN_BYTES:
                self._run = max(self._run, _longest_run(chunk))
            if self._run <= MAX_TOKEN_BYTES:
                self._run = len(chunk) - 1 - max(chunk.rfind(b"<"), chunk.rfind(b">"))
        if self._run > MAX_TOKEN_BYTES:
            raise FormatError(
                f"an attribute value or text longer than {MAX_TOKEN_BYTES:,} bytes: refused"
                " (no export holds one; parsing it would take hours)",
                f"{self._name} near byte {self._offset:,}",
            )


_NO_MARKUP = re.compile(rb"[^<>]+")


def _longest_run(chunk: bytes) -> int:
    return max((m.end() - m.start() for m in _NO_MARKUP.finditer(chunk)), default=0)


def _read_head(raw: _Readable) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size < _HEAD_BYTES:
        part = raw.read(_HEAD_BYTES - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def _blank_declarations(head: bytes) -> bytes:
    match = _DECLARATIONS_ONLY.search(head)
    if match is None:
        return head
    subset = match.group(1)
    if b"<!ENTITY" in subset or b"<HealthData" in subset:
        return head
    return head[: match.start(1)] + b"\n" * subset.count(b"\n") + head[match.end(1) :]


@dataclass(slots=True)
class _State:
    name: str
    report: ParseReport
    blood_pressure_seen: set[tuple[str | None, ...]] = field(default_factory=set)

    def locator(self, line: int) -> str:
        return f"{self.name} line {line}"

    def first_sighting(self, attrs: Mapping[str, str]) -> bool:
        """False for a blood-pressure reading already taken.

        Each reading comes twice: as a top-level `<Record>` and inside its
        `<Correlation>` (Apple's DTD says so). We take whichever copy comes first rather
        than trust that the top-level copy is always there: a reading is never lost and
        never doubled. Only blood-pressure keys are kept, a few a day, so this stays small.
        """
        key = tuple(
            attrs.get(name)
            for name in ("type", "sourceName", "startDate", "endDate", "value", "unit")
        )
        if key in self.blood_pressure_seen:
            return False
        self.blood_pressure_seen.add(key)
        return True


def _data_element(child: _Child, state: _State) -> Sample | Rejected | None:
    """What a child of the root other than a correlation comes to."""
    tag = child.element.tag
    if tag in _NOT_DATA:
        return None
    state.report.read += 1
    if tag == "Record":
        return _record_once(child.element.attrib, state.locator(child.line), state)
    if tag == "Workout":
        return _read(_workout, child.element.attrib, state.locator(child.line))
    state.report.unmapped[tag] += 1
    return None


def _correlation(child: _Child, state: _State) -> Iterator[Sample | Rejected]:
    state.report.read += 1
    kind = child.element.get("type", "Correlation")
    if kind != _BLOOD_PRESSURE_CORRELATION:
        state.report.unmapped[kind] += 1
        return
    records = child.element.iterfind("Record")
    for record, line in zip(records, child.record_lines, strict=True):
        if record.get("type") in _BLOOD_PRESSURE:
            outcome = _record_once(record.attrib, state.locator(line), state)
            if outcome is not None:
                yield outcome


def _record_once(attrs: Mapping[str, str], locator: str, state: _State) -> Sample | Rejected | None:
    kind = attrs.get("type")
    if kind in _BLOOD_PRESSURE and not state.first_sighting(attrs):
        return None
    if kind in _QUANTITY_CODES:
        return _read(_quantity, attrs, locator)
    if kind == _SLEEP:
        return _read(_sleep, attrs, locator)
    if kind is None:
        return Rejected("missing_value", "type", "Record without a type", locator, dict(attrs))
    state.report.unmapped[kind] += 1
    return None


class _Unreadable(Exception):
    """One field of a record we map cannot be read; becomes a `Rejected`."""

    def __init__(self, reason: str, attribute: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.attribute = attribute
        self.detail = detail


def _read(
    reader: Callable[[Mapping[str, str], str], Sample], attrs: Mapping[str, str], locator: str
) -> Sample | Rejected:
    try:
        return reader(attrs, locator)
    except _Unreadable as err:
        return Rejected(err.reason, err.attribute, err.detail, locator, dict(attrs))


def _quantity(attrs: Mapping[str, str], locator: str) -> Sample:
    kind = attrs["type"]
    span = _span(attrs)
    value = _number(attrs, "value", percent_from_fraction=kind in _FRACTIONS)
    unit = _required(attrs, "unit")
    return _sample(_QUANTITY_CODES[kind], value, unit, span, attrs, locator)


def _sleep(attrs: Mapping[str, str], locator: str) -> Sample:
    span = _span(attrs)
    category = _required(attrs, "value")
    stage = _SLEEP_STAGES.get(category)
    if stage is None:
        raise _Unreadable("bad_value", "value", f"unknown sleep analysis value {category!r}")
    start, end = span
    minutes = (end - start).total_seconds() / 60
    return _sample("x-rejuve:sleep-stage", minutes, "min", span, attrs, locator, stage)


def _workout(attrs: Mapping[str, str], locator: str) -> Sample:
    span = _span(attrs)
    activity = _required(attrs, "workoutActivityType")
    duration = _number(attrs, "duration")
    unit = _required(attrs, "durationUnit")
    seconds = _SECONDS_PER_UNIT.get(unit)
    if seconds is None:
        raise _Unreadable("bad_value", "durationUnit", f"unknown duration unit {unit!r}")
    minutes = duration * seconds / 60
    qualifier = _activity_name(activity)
    return _sample("x-rejuve:workout", minutes, "min", span, attrs, locator, qualifier)


def _activity_name(activity: str) -> str:
    # Snake case, like the sleep stages: "TraditionalStrengthTraining" would otherwise
    # read as one word.
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", activity.removeprefix(_WORKOUT_PREFIX))
    return words.lower()


def _sample(
    code: str,
    value: float,
    unit: str,
    span: _Span,
    attrs: Mapping[str, str],
    locator: str,
    qualifier: str | None = None,
) -> Sample:
    start, end = span
    offset = start.utcoffset() or dt.timedelta()
    return Sample(
        code=code,
        value=value,
        unit=unit,
        start=start,
        end=end,
        tz_offset_minutes=offset // _MINUTE,
        source=_source(attrs.get("sourceName"), attrs.get("sourceVersion"), attrs.get("device")),
        locator=locator,
        qualifier=qualifier,
    )


@functools.lru_cache(maxsize=1024)
def _source(name: str | None, version: str | None, device: str | None) -> str:
    """Provenance such as "Anna's Apple Watch (10.1) [Apple Watch]": app, version, hardware."""
    parts = [name or "unknown source"]
    if version:
        parts.append(f"({version})")
    hardware = _DEVICE_NAME.search(device) if device else None
    if hardware is not None:
        parts.append(f"[{hardware.group(1).strip()}]")
    return " ".join(parts)


def _required(attrs: Mapping[str, str], key: str) -> str:
    text = attrs.get(key)
    if text is None or not text.strip():
        raise _Unreadable("missing_value", key, f"no {key}")
    return text


def _number(attrs: Mapping[str, str], key: str, *, percent_from_fraction: bool = False) -> float:
    text = _required(attrs, key)
    number = _finite(text) if _NUMBER_CHARACTERS.issuperset(text) else None
    if number is None:
        raise _Unreadable("bad_value", key, f"{key} {text!r} is not a number")
    if percent_from_fraction:
        # Decimal keeps 0.253 -> 25.3 exact, where 0.253 * 100 gives 25.299999999999997.
        return float(Decimal(text).scaleb(2))
    return number


def _finite(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _span(attrs: Mapping[str, str]) -> _Span:
    start = _timestamp(attrs, "startDate")
    end = _timestamp(attrs, "endDate")
    if end < start:
        raise _Unreadable(
            "bad_interval",
            "endDate",
            f"endDate {attrs['endDate']!r} is before startDate {attrs['startDate']!r}",
        )
    return start, end


def _timestamp(attrs: Mapping[str, str], key: str) -> dt.datetime:
    text = _required(attrs, key)
    stamp = _parse_timestamp(text)
    if stamp is None:
        raise _Unreadable(
            "bad_timestamp", key, f"{key} {text!r} is not 'YYYY-MM-DD hh:mm:ss +hhmm'"
        )
    return stamp


# Most records repeat a date they or their neighbour just had (heart-rate samples start
# and end at the same second; step intervals follow each other), so a small cache saves
# a good share of the parsing and of the allocations.
@functools.lru_cache(maxsize=64)
def _parse_timestamp(text: str) -> dt.datetime | None:
    """Apple's "2024-03-02 07:15:00 +0100" ("%Y-%m-%d %H:%M:%S %z"), or None."""
    # fromisoformat would read an offset of +0175 as +02:15.
    if len(text) != _STAMP_LENGTH or text[10] != " " or text[19] != " " or text[23] > "5":
        return None
    # Without the space before the offset this is ISO 8601, which fromisoformat reads
    # several times faster than strptime reads Apple's format.
    try:
        return dt.datetime.fromisoformat(text[:19] + text[20:])
    except ValueError:  # 2024-02-30, 25:00, an offset of a day or more
        return None
