"""The formats the platform accepts, by the name users give (`--format`)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from backend.exceptions import UserError
from backend.ingest.model import ParseReport, Rejected, Sample

Parsed = Iterator[Sample | Rejected]


@dataclass(frozen=True)
class Format:
    name: str
    content_type: str
    module: str  # imported on first use: parsers pull in large libraries (fhir.resources)
    description: str
    # The format writes wall-clock times without an offset: landing needs the member's
    # time zone (`--tz` or the member's setting) and passes it as options["tz"].
    local_times: bool = False
    # A folder may be given: it is landed as one deterministic zip (backend.ingest.folder).
    folders: bool = False

    def parse(
        self,
        data: BinaryIO,
        report: ParseReport,
        *,
        name: str,
        options: Mapping[str, Any] | None = None,
    ) -> Parsed:
        mod = importlib.import_module(self.module)
        if self.name == "apple-health" and _is_zip(data):
            return cast(Parsed, mod.parse_zip(data, report, name=name))
        if self.name == "omh":
            return cast(Parsed, mod.parse(data, report, name=name, options=options))
        if self.name == "csv-lab":
            mapping_cls = mod.CsvMapping
            mapping = mapping_cls.from_dict(dict(options)) if options else mapping_cls.default()
            return cast(Parsed, mod.parse(data, report, name=name, mapping=mapping))
        if self.local_times or self.folders:
            return cast(Parsed, mod.parse(data, report, name=name, options=dict(options or {})))
        return cast(Parsed, mod.parse(data, report, name=name))


def _is_zip(data: BinaryIO) -> bool:
    pos = data.tell()
    magic = data.read(4)
    data.seek(pos)
    return magic == b"PK\x03\x04"


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "apple-health",
            "application/xml",
            "backend.ingest.formats.apple_health",
            "Apple Health export.xml or export.zip",
        ),
        Format(
            "fhir",
            "application/fhir+json",
            "backend.ingest.formats.fhir",
            "FHIR R4 Observation or Bundle (JSON)",
        ),
        Format(
            "omh",
            "application/json",
            "backend.ingest.formats.omh",
            "Open mHealth / IEEE 1752 data points (JSON, array or NDJSON)",
        ),
        Format(
            "csv-lab",
            "text/csv",
            "backend.ingest.formats.csv_lab",
            "lab results as CSV, with a column mapping",
        ),
        Format(
            "garmin",
            "application/zip",
            "backend.ingest.formats.garmin",
            "Garmin Connect export (zip with DI_CONNECT/, or its folder)",
            folders=True,
        ),
        Format(
            "fit",
            "application/vnd.ant.fit",
            "backend.ingest.formats.fit",
            "FIT activity file (.fit)",
        ),
        Format(
            "health-connect",
            "application/zip",
            "backend.ingest.formats.health_connect",
            "Android Health Connect export (zip with health_connect_export.db, or its folder)",
            folders=True,
        ),
        Format(
            "device-batch",
            "application/vnd.rejuve.device-batch+json",
            "backend.ingest.formats.device_batch",
            "the ingestion API's JSON batch",
        ),
        Format(
            "fitbit",
            "application/zip",
            "backend.ingest.formats.fitbit",
            "Fitbit account export (zip or its folder; needs the member's time zone)",
            local_times=True,
            folders=True,
        ),
    )
}


def get(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise UserError(f"unknown format '{name}'; known: {', '.join(FORMATS)}") from None
