"""The platform's own JSON batch for device streams (the ingestion API's body)."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterator
from typing import Annotated, BinaryIO

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from backend.ingest.model import FormatError, ParseReport, Rejected, Sample

CONTENT_TYPE = "application/vnd.rejuve.device-batch+json"
MAX_SAMPLES = 10_000
MAX_UNITS = 32
# Times the platform believes a measurement can have: nothing before 1900, nothing more
# than a year ahead (the refiner quarantines anything ahead of its clock, less skew).
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
FURTHEST_AHEAD = dt.timedelta(days=366)


# The ingestion API validates with `context=DOOR`: what the platform cannot store or
# believe is refused there, naming the field. The refiner parses the same model without
# it, so a batch landed before (or by another path) is not refused as a whole for one bad
# sample: normalisation quarantines that sample with its reason.
DOOR = {"door": True}


def _at_door(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("door"))


def storable_text(value: str, info: ValidationInfo) -> str:
    """Text PostgreSQL can store: no NUL, no lone surrogate (JSON lets both through)."""
    if not _at_door(info):
        return value
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (a lone surrogate escape is not)") from None
    return value


def plausible_time(value: dt.datetime, info: ValidationInfo) -> dt.datetime:
    if not _at_door(info):
        return value
    if value < EARLIEST:
        raise ValueError(f"is before {EARLIEST:%Y-%m-%d}: not a plausible measurement time")
    if value > dt.datetime.now(dt.UTC) + FURTHEST_AHEAD:
        raise ValueError("is more than a year in the future: not a plausible measurement time")
    return value


def finite(value: float, info: ValidationInfo) -> float:
    # NaN, Infinity and 1e400 (which JSON parsers read as infinity) cannot be stored.
    if _at_door(info) and not math.isfinite(value):
        raise ValueError("must be a finite number (not NaN or infinite)")
    return value


Text = AfterValidator(storable_text)
When = Annotated[AwareDatetime, AfterValidator(plausible_time)]


class DeviceSample(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Annotated[
        str,
        Field(min_length=1, max_length=64, description="catalog code (LOINC), e.g. 8867-4"),
        Text,
    ]
    value: Annotated[float, Field(description="a finite number"), AfterValidator(finite)]
    unit: Annotated[
        str, Field(min_length=1, max_length=64, description="UCUM or source unit"), Text
    ]
    start: When
    end: When | None = None
    qualifier: Annotated[str | None, Field(max_length=64), Text] = None


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
    device: Annotated[str, Field(min_length=1, max_length=200), Text]
    samples: Annotated[list[DeviceSample], Field(min_length=1, max_length=MAX_SAMPLES)]

    @field_validator("samples")
    @classmethod
    def _few_units(cls, samples: list[DeviceSample], info: ValidationInfo) -> list[DeviceSample]:
        # Each distinct unit is parsed at the door (a few ms each): a device sends a
        # handful, so a batch with many is refused rather than made expensive.
        if _at_door(info) and len({s.unit for s in samples}) > MAX_UNITS:
            raise ValueError(f"more than {MAX_UNITS} distinct units in one batch")
        return samples


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
