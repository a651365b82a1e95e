"""What parsers produce: samples as the source stated them, before normalisation."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple


class Coded(NamedTuple):
    """A result that is not a number: a coded concept (`system` + `code`, its display in
    `text`), a text result (`text` alone) or a yes/no (`boolean`)."""

    code: str | None = None
    system: str | None = None
    text: str | None = None
    boolean: bool | None = None


class Sample(NamedTuple):
    """One measurement as the source stated it.

    A NamedTuple, not a frozen dataclass: parsers make one per record, millions per export,
    and a frozen dataclass costs several times more to construct.

    `code` is already the catalog code (LOINC, see `backend.ingest.catalog`); `unit` is
    the unit exactly as the source wrote it (Apple's `count/min`, a FHIR UCUM code, an
    Open mHealth unit) and is converted to the catalog's canonical UCUM unit later.
    A LOINC code outside the catalog is kept as it is (stored flagged `uncatalogued`), and
    so is a code the catalog folds (2708-6 -> 59408-5): the fold is recorded on the row.

    A result that is not a number has `value` None and its `coded` value, `unit` "".
    """

    code: str
    value: float | None
    unit: str
    start: dt.datetime  # time-zone aware
    source: str  # device / app provenance, e.g. "Apple Watch (Health 17.2)"
    locator: str  # where in the input: "export.xml line 1234", "entry[3].resource"
    end: dt.datetime | None = None
    tz_offset_minutes: int | None = None  # the offset the source stated, if any
    member_ref: str | None = None  # the source's own subject reference (FHIR Patient/..., CSV id)
    qualifier: str | None = None  # e.g. a sleep stage ("asleep_core", "awake", "in_bed")
    coded: Coded | None = None  # a coded, text or boolean result (value is None)
    flags: tuple[str, ...] = ()  # kept on the row's quality_flags, e.g. DATE_ONLY


# --- date-only times: one rule for every format ----------------------------------------

DATE_ONLY = "date_only"
"""The flag of a sample whose source gave a date without a time (a lab report's
collection date). Such a sample is placed at the start of that day in UTC, no offset is
recorded (tz_offset_minutes None), and the row carries this flag, so nobody reads the
midnight as a measured time. Every parser that meets a date-only time calls `date_only`."""


def date_only(day: dt.date) -> dt.datetime:
    """Where a date-only time is placed: see DATE_ONLY."""
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def is_number(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record the parser read but could not turn into a sample: kept for quarantine."""

    reason: str  # machine-readable: "missing_value", "bad_timestamp", "schema_invalid", ...
    field: str | None  # the field at fault
    detail: str  # human-readable, no personal data beyond the record itself
    locator: str
    record: dict[str, object]  # the offending record as read, for the steward


@dataclass
class ParseReport:
    """Totals a parser keeps while it streams: what it could not map, by type."""

    unmapped: Counter[str] = field(default_factory=Counter)
    read: int = 0  # records (elements, resources, rows, data points) read

    def merge(self, other: ParseReport) -> None:
        self.unmapped.update(other.unmapped)
        self.read += other.read


class FormatError(ValueError):
    """The input is not the format it claims to be (not a recoverable single record).

    The message says what is wrong and where: file, line or element, field."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
