"""The platform's own JSON batch for device streams (the ingestion API's body)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated, BinaryIO

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from backend.ingest.model import FormatError, ParseReport, Rejected, Sample

CONTENT_TYPE = "application/vnd.rejuve.device-batch+json"
MAX_SAMPLES = 10_000


class DeviceSample(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Annotated[
        str, Field(min_length=1, max_length=64, description="catalog code (LOINC), e.g. 8867-4")
    ]
    value: float
    unit: Annotated[str, Field(min_length=1, max_length=64, description="UCUM or source unit")]
    start: AwareDatetime
    end: AwareDatetime | None = None
    qualifier: Annotated[str | None, Field(max_length=64)] = None


class DeviceBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=128,
            pattern=r"^[A-Za-z0-9._:-]+$",
            description="the client's id for this batch: resending "
            "the same id is safe and lands the batch once",
        ),
    ]
    member_id: uuid.UUID
    device: Annotated[str, Field(min_length=1, max_length=200)]
    samples: Annotated[list[DeviceSample], Field(min_length=1, max_length=MAX_SAMPLES)]


def parse(
    data: BinaryIO, report: ParseReport, *, name: str = "batch"
) -> Iterator[Sample | Rejected]:
    raw = data.read()
    try:
        batch = DeviceBatch.model_validate_json(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise FormatError(err["msg"], f"{name} {where}") from e
    for i, s in enumerate(batch.samples):
        report.read += 1
        offset = s.start.utcoffset()
        yield Sample(
            code=s.code,
            value=s.value,
            unit=s.unit,
            start=s.start,
            end=s.end,
            source=batch.device,
            locator=f"samples[{i}]",
            qualifier=s.qualifier,
            tz_offset_minutes=int(offset.total_seconds() // 60) if offset is not None else None,
        )
