"""What parsers produce: samples as the source stated them, before normalisation."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple


class Sample(NamedTuple):
    """One measurement as the source stated it.

    A NamedTuple, not a frozen dataclass: parsers make one per record, millions per export,
    and a frozen dataclass costs several times more to construct.

    `code` is already the catalog code (LOINC, see `backend.ingest.catalog`); `unit` is
    the unit exactly as the source wrote it (Apple's `count/min`, a FHIR UCUM code, an
    Open mHealth unit) and is converted to the catalog's canonical UCUM unit later.
    """

    code: str
    value: float
    unit: str
    start: dt.datetime  # time-zone aware
    source: str  # device / app provenance, e.g. "Apple Watch (Health 17.2)"
    locator: str  # where in the input: "export.xml line 1234", "entry[3].resource"
    end: dt.datetime | None = None
    tz_offset_minutes: int | None = None  # the offset the source stated, if any
    member_ref: str | None = None  # the source's own subject reference (FHIR Patient/..., CSV id)
    qualifier: str | None = None  # e.g. a sleep stage ("asleep_core", "awake", "in_bed")


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
