"""Lab results exported as CSV, one result per row, in a layout described by `CsvMapping`.

The plain layout (`CsvMapping.default()`) is

    member_id,loinc,value,unit,effective_at
    M-0001,4548-4,6.1,%,2024-03-02T08:10:00+01:00

A lab system with its own layout gets a small TOML file instead of code, loaded with
`CsvMapping.from_toml(path)`. Every key is optional and defaults to the plain layout:

    delimiter = ";"                 # one character
    decimal = ","                   # "." or "," (European exports)
    member_id = "Patienten-ID"      # column names, exactly as in the header row
    loinc = "LOINC"                 # either a LOINC column ...
    test_name = "Analyt"            # ... or a test-name column plus [test_names]
    value = "Ergebnis"
    unit = "Einheit"
    effective_at = "Abnahmezeit"
    date_formats = ["%d.%m.%Y %H:%M", "%d.%m.%Y"]  # strptime formats; none: ISO 8601
    timezone_column = "TZ"          # IANA name or +HH:MM per row, for times without offset
    default_timezone = "Europe/Berlin"  # for times without offset when there is no column
    source_column = "Labor"         # provenance per row ...
    source = "Labor Nord"           # ... or one for the whole file

    [test_names]                    # test name (case-insensitive) -> LOINC code
    "HbA1c" = "4548-4"

`tests/fixtures/csv_lab/mapping-eu.toml` is a complete example.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import math
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.ingest.catalog import LOINC_SHAPE, is_loinc, lookup
from backend.ingest.model import (
    DATE_ONLY,
    Coded,
    FormatError,
    ParseReport,
    Rejected,
    Sample,
    date_only,
)

_OFFSET: Final = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2}):?(\d{2})$")
_CENSORED: Final = re.compile(r"^\s*[<>≤≥]=?")
_ISO_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class MappingError(ValueError):
    """A mapping that cannot describe any file (bad TOML, unknown key, bad value)."""


@dataclass(frozen=True)
class CsvMapping:
    """Where each field of a lab result lives in a CSV file, and how it is written."""

    member_id: str = "member_id"
    loinc: str | None = None  # "loinc" unless `test_name` is given
    test_name: str | None = None
    test_names: Mapping[str, str] = field(default_factory=dict, hash=False)
    value: str = "value"
    unit: str = "unit"
    effective_at: str = "effective_at"
    date_formats: tuple[str, ...] = ()
    timezone_column: str | None = None
    default_timezone: str | None = None
    source_column: str | None = None
    source: str | None = None
    delimiter: str = ","
    decimal: str = "."

    def __post_init__(self) -> None:
        if self.loinc is not None and self.test_name is not None:
            raise MappingError("set one of `loinc` and `test_name`, not both")
        if self.loinc is None and self.test_name is None:
            object.__setattr__(self, "loinc", "loinc")
        if self.test_name is not None and not self.test_names:
            raise MappingError("`test_name` needs a [test_names] table (name -> LOINC)")
        if len(self.delimiter) != 1:
            raise MappingError(f"delimiter must be one character, not {self.delimiter!r}")
        if self.decimal not in (".", ","):
            raise MappingError(f"decimal must be '.' or ',', not {self.decimal!r}")
        if self.decimal == self.delimiter:
            raise MappingError("the decimal separator cannot also be the delimiter")
        if self.default_timezone is not None:
            _zone(self.default_timezone)
        # Names are matched case-insensitively; frozen, so no caller can change them later.
        folded = {str(k).strip().casefold(): str(v).strip() for k, v in self.test_names.items()}
        object.__setattr__(self, "test_names", MappingProxyType(folded))
        if isinstance(self.date_formats, str) or not all(
            isinstance(f, str) for f in self.date_formats
        ):
            raise MappingError("date_formats must be a list of strptime formats")
        object.__setattr__(self, "date_formats", tuple(self.date_formats))

    @classmethod
    def default(cls) -> CsvMapping:
        """`member_id,loinc,value,unit,effective_at`, comma-separated, ISO 8601 times."""
        return cls()

    @classmethod
    def from_toml(cls, path: Path | str) -> CsvMapping:
        try:
            with Path(path).open("rb") as handle:
                raw = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise MappingError(f"{path}: not TOML: {exc}") from exc
        return cls.from_dict(raw, where=str(path))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "mapping") -> CsvMapping:
        """The same keys as the TOML file (the batch manifest stores them like this)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            # A misspelt key would otherwise fall back to a default column silently.
            raise MappingError(f"{where}: unknown key(s) {', '.join(unknown)}")
        values: dict[str, Any] = dict(raw)
        if isinstance(values.get("date_formats"), list):
            values["date_formats"] = tuple(values["date_formats"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise MappingError(f"{where}: {exc}") from exc

    @property
    def code_column(self) -> str:
        return self.test_name if self.test_name is not None else (self.loinc or "loinc")

    def required_columns(self) -> list[str]:
        return [self.member_id, self.code_column, self.value, self.unit, self.effective_at]

    def optional_columns(self) -> list[str]:
        return [c for c in (self.timezone_column, self.source_column) if c is not None]


DEFAULT_MAPPING: Final = CsvMapping.default()


def _zone(name: str) -> dt.tzinfo:
    match = _OFFSET.match(name.strip())
    if match:
        sign = -1 if match[1] == "-" else 1
        minutes = sign * (int(match[2]) * 60 + int(match[3]))
        return dt.timezone(dt.timedelta(minutes=minutes))
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise MappingError(f"unknown time zone {name!r}") from exc


# --- one row ---------------------------------------------------------------------------


class _BadCell(ValueError):
    def __init__(self, reason: str, column: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.column = column


def _cell(row: Mapping[str, str], column: str) -> str:
    text = row.get(column, "").strip()
    if not text:
        raise _BadCell("missing_value", column, f"{column} is empty")
    return text


def _number(text: str, mapping: CsvMapping, column: str) -> float:
    if _CENSORED.match(text):
        # "<0.5" is a censored result, not the number 0.5: a steward decides.
        raise _BadCell("bad_value", column, f"censored value {text!r}")
    other = "," if mapping.decimal == "." else "."
    if other in text:
        # Thousands separators are not accepted: in a lab value "1,234" is as likely a
        # decimal comma from a misconfigured export as one thousand two hundred.
        raise _BadCell("bad_value", column, f"{text!r} does not use {mapping.decimal!r}")
    try:
        number = float(text.replace(mapping.decimal, "."))
    except ValueError as exc:
        raise _BadCell("bad_value", column, f"{text!r} is not a number") from exc
    if not math.isfinite(number):
        raise _BadCell("bad_value", column, f"{text!r} is not a finite number")
    return number


def _code(row: Mapping[str, str], mapping: CsvMapping) -> str:
    """The LOINC code as the lab wrote it: a catalog code (folding, 15074-8 -> 2339-0,
    happens in normalisation and is recorded on the row) or another valid LOINC code
    (stored flagged uncatalogued)."""
    column = mapping.code_column
    text = _cell(row, column)
    if mapping.test_name is not None:
        loinc = mapping.test_names.get(text.casefold())
        if loinc is None:
            # The lab reports a test the mapping does not name: fixable in the mapping.
            raise _BadCell("unknown_code", column, f"test name {text!r} is not in the mapping")
    else:
        loinc = text
    if not LOINC_SHAPE.match(loinc):
        raise _BadCell("unknown_code", column, f"{loinc!r} is not a LOINC code")
    if lookup(loinc) is None and not is_loinc(loinc):
        raise _BadCell("unknown_code", column, f"{loinc!r} fails the LOINC check digit")
    return loinc


def _value(row: Mapping[str, str], mapping: CsvMapping) -> tuple[float | None, str, Coded | None]:
    """(number, unit, None) or, for a result with no digit in it ("Detected",
    "negative"), (None, "", the text as a coded result): a text result needs no unit."""
    text = _cell(row, mapping.value)
    if not _CENSORED.match(text) and not any(ch.isdigit() for ch in text) and not _float(text):
        return None, "", Coded(text=text)
    return _number(text, mapping, mapping.value), _cell(row, mapping.unit), None


def _float(text: str) -> bool:
    """Whether Python reads `text` as a float ("NaN", "inf": numbers, refused as such)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


_TIME_DIRECTIVES: Final = ("%H", "%I", "%M", "%S", "%p", "%X", "%c", "%f")


def _time(row: Mapping[str, str], mapping: CsvMapping) -> tuple[dt.datetime, int | None, bool]:
    """(start, stated offset, date only): a date without a time follows the platform's
    one rule (model.DATE_ONLY) and needs no time zone."""
    column = mapping.effective_at
    text = _cell(row, column)
    moment, day_only = _parse_time(text, mapping.date_formats, column)
    if day_only:
        return date_only(moment.date()), None, True
    if moment.tzinfo is None:
        zone_name = row.get(mapping.timezone_column or "", "").strip()
        zone_name = zone_name or (mapping.default_timezone or "")
        if not zone_name:
            raise _BadCell(
                "bad_timestamp",
                column,
                f"{text!r} has no offset and the mapping names no time zone",
            )
        try:
            zone = _zone(zone_name)
        except MappingError as exc:
            raise _BadCell("bad_timestamp", mapping.timezone_column or column, str(exc)) from exc
        # The zone comes from the row or from the lab's documented convention in the
        # mapping; either way it is the source's statement, so its offset is recorded.
        moment = moment.replace(tzinfo=zone)
    offset = moment.utcoffset() or dt.timedelta(0)  # aware by now: never None
    return moment, int(offset.total_seconds() // 60), False


def _parse_time(text: str, formats: tuple[str, ...], column: str) -> tuple[dt.datetime, bool]:
    if not formats:
        try:
            return dt.datetime.fromisoformat(text), _ISO_DATE.match(text) is not None
        except ValueError as exc:
            raise _BadCell("bad_timestamp", column, f"{text!r} is not ISO 8601") from exc
    for fmt in formats:
        try:
            moment = dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return moment, not any(d in fmt for d in _TIME_DIRECTIVES)
    raise _BadCell("bad_timestamp", column, f"{text!r} matches none of {list(formats)}")


def _source(row: Mapping[str, str], mapping: CsvMapping) -> str:
    stated = row.get(mapping.source_column or "", "").strip()
    return f"csv:{stated or mapping.source or 'unknown'}"


def _row(
    row: dict[str, str], mapping: CsvMapping, locator: str, report: ParseReport
) -> Sample | Rejected | None:
    try:
        member = _cell(row, mapping.member_id)
        code = _code(row, mapping)
        value, unit, coded = _value(row, mapping)
        start, offset, day_only = _time(row, mapping)
    except _BadCell as exc:
        return Rejected(exc.reason, exc.column, str(exc), locator, dict(row))
    return Sample(
        code=code,
        value=value,
        unit=unit,
        start=start,
        source=_source(row, mapping),
        locator=locator,
        tz_offset_minutes=offset,
        member_ref=member,
        coded=coded,
        flags=(DATE_ONLY,) if day_only else (),
    )


# --- the file --------------------------------------------------------------------------


def _header(reader: Any, mapping: CsvMapping, name: str) -> list[str]:
    for cells in reader:
        if any(c.strip() for c in cells):
            line = reader.line_num
            header = [c.strip() for c in cells]
            missing = [c for c in mapping.required_columns() if c not in header]
            missing += [c for c in mapping.optional_columns() if c not in header]
            if missing:
                raise FormatError(
                    f"missing column(s) {', '.join(missing)} (the header has: {', '.join(header)})",
                    f"{name} line {line}",
                )
            return header
    raise FormatError("no header row", name)


def parse(
    data: BinaryIO,
    report: ParseReport,
    *,
    name: str,
    mapping: CsvMapping = DEFAULT_MAPPING,
) -> Iterator[Sample | Rejected]:
    """Samples from a lab CSV, streamed row by row; see the module docstring."""
    reader = csv.reader(_text_lines(data, name), delimiter=mapping.delimiter, strict=True)
    try:
        yield from _rows(reader, mapping, name, report)
    except csv.Error as exc:
        raise FormatError(f"broken CSV: {exc}", f"{name} line {reader.line_num}") from exc


def _text_lines(data: BinaryIO, name: str) -> Iterator[str]:
    """The file's lines, decoded one at a time so a bad byte is reported on its own line
    (a text wrapper decodes ahead in chunks). Line endings are kept, as the csv module
    needs them to read line breaks inside quoted fields."""
    for number, raw in enumerate(data, start=1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            # Spreadsheet programs put a byte-order mark in front of UTF-8 exports.
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            where = f"{name} line {number}"
            raise FormatError(f"not UTF-8 text (byte {exc.start + 1} of the line)", where) from exc


def _rows(
    reader: Any, mapping: CsvMapping, name: str, report: ParseReport
) -> Iterator[Sample | Rejected]:
    header = _header(reader, mapping, name)
    previous_end = reader.line_num
    for cells in reader:
        first_line, previous_end = previous_end + 1, reader.line_num
        if not any(c.strip() for c in cells):
            continue
        report.read += 1
        locator = f"{name} line {first_line}"
        if len(cells) > len(header):
            record: dict[str, object] = dict(zip(header, cells, strict=False))
            record["_extra"] = cells[len(header) :]
            yield Rejected(
                "bad_row",
                None,
                f"{len(cells)} fields but the header has {len(header)} "
                f"(an unquoted {mapping.delimiter!r} in a value?)",
                locator,
                record,
            )
            continue
        row = dict(zip(header, cells, strict=False))
        result = _row(row, mapping, locator, report)
        if result is not None:
            yield result
