"""FIT activity files (Garmin's Flexible and Interoperable Data Transfer), decoded with
fitdecode as a stream of messages.

- `record` messages (one a second on most watches) give heart rate (`heart_rate`, bpm),
  `cadence` (rpm: strides or pedal turns a minute), `speed` / `enhanced_speed` (m/s) and
  `power` (W) at their `timestamp`. The cumulative `distance` odometer is not a
  measurement of its own: the session's total is stored instead.
- `session` messages give the workout (`sport`, `start_time`, `total_elapsed_time`) and
  its `total_distance`.
- `file_id` (`manufacturer`, `product` / `garmin_product`) names the device: the source.

FIT times are UTC, seconds since 1989-12-31 00:00 (fitdecode makes them aware
datetimes); values below 0x10000000 are seconds since the device powered on, not times,
and are refused. The wall-clock offset is only stated by the closing `activity` message
(`local_timestamp`), after the records: samples carry no offset rather than a guess.
Fields a device marks invalid (0xFF...) arrive as None and are skipped.

A damaged file (bad CRC, cut in the middle of a message, not FIT at all) is refused as a
whole with one line naming the file and the byte offset where reading stopped: a FIT
file carries its CRC at its end, so nothing before the damage can be told complete or
intact. The batch is then "unreadable" (the refiner stores none of its samples) and
stays in the raw zone as received; a complete copy of the file can be ingested later.

`report.read` counts data messages; those other than `record`, `session`, `file_id`
and `device_info` (laps, events, HRV...) are counted in `report.unmapped` by name."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from struct import error as struct_error
from typing import Any, BinaryIO

# fitdecode ships no type information; "unused-ignore" keeps mypy quiet once it does.
import fitdecode  # type: ignore[import-untyped, unused-ignore]

from backend.ingest.model import FormatError, ParseReport, Rejected, Sample

_RECORD_FIELDS = (
    # (FIT field, catalog code, unit as FIT states it)
    ("heart_rate", "8867-4", "/min"),
    ("cadence", "x-rejuve:cadence", "/min"),
    ("enhanced_speed", "x-rejuve:speed", "m/s"),
    ("speed", "x-rejuve:speed", "m/s"),
    ("power", "x-rejuve:power", "W"),
)
_HEADER_MESSAGES = frozenset({"file_id", "device_info", "file_creator"})
_GARBLED = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AssertionError,
    struct_error,
    OverflowError,
    ZeroDivisionError,
)


class _Counting:
    """The input as fitdecode reads it, counting bytes so an error can say where."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.offset = 0

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._raw.read(size)
        self.offset += len(chunk)
        return chunk


def parse(
    data: BinaryIO, report: ParseReport, *, name: str = "activity.fit"
) -> Iterator[Sample | Rejected]:
    """Stream the samples of one FIT file (or of FIT files chained in one input)."""
    counting = _Counting(data)
    source = "FIT file"
    number = 0  # data messages so far: the locator names the message by its place
    headers = 0  # FIT files in the input (FIT files may be chained)
    try:
        reader = fitdecode.FitReader(
            counting,
            check_crc=fitdecode.CrcCheck.RAISE,
            error_handling=fitdecode.ErrorHandling.RAISE,
        )
        with reader:
            for frame in reader:
                if isinstance(frame, fitdecode.FitHeader):
                    headers += 1
                if not isinstance(frame, fitdecode.FitDataMessage):
                    continue
                report.read += 1
                number += 1
                message = frame.name
                locator = f"{name} message {number} ({message})"
                if message == "record":
                    yield from _record(frame, source, locator, report)
                elif message == "session":
                    yield from _session(frame, source, locator)
                elif message == "file_id":
                    source = _device(frame) or source
                elif message not in _HEADER_MESSAGES:
                    report.unmapped[f"fit {message}"] += 1
            if not headers:
                raise FormatError("not a FIT file: it is empty", name)
    except FormatError:
        raise
    except fitdecode.FitError as err:
        raise FormatError(_why(err), f"{name} byte {counting.offset}") from err
    except _GARBLED as err:
        # fitdecode raises these for values its profile cannot decode (a garbled
        # definition, found by flipping bytes): the file is as damaged as with a
        # FitParseError.
        raise FormatError(
            f"not a readable FIT file ({type(err).__name__})", f"{name} byte {counting.offset}"
        ) from err


def _why(err: fitdecode.FitError) -> str:
    if isinstance(err, fitdecode.FitCRCError):
        return "damaged FIT file: its CRC does not match (file altered or cut)"
    if isinstance(err, fitdecode.FitEOFError):
        return "FIT file ends in the middle of a message (truncated)"
    if isinstance(err, fitdecode.FitHeaderError):
        return f"not a FIT file, or its header is damaged ({err})"[:200]
    return f"damaged FIT file ({err})"[:200]


def _value(frame: fitdecode.FitDataMessage, field: str) -> Any:
    return frame.get_value(field, fallback=None) if frame.has_field(field) else None


def _record(
    frame: fitdecode.FitDataMessage, source: str, locator: str, report: ParseReport
) -> Iterator[Sample | Rejected]:
    stamp = _value(frame, "timestamp")
    values: list[tuple[str, Any, str]] = []
    for field, code, unit in _RECORD_FIELDS:
        value = _value(frame, field)
        if value is None or (field == "speed" and any(c == code for c, _, _ in values)):
            continue  # enhanced_speed, when present, is the same speed at more resolution
        values.append((code, value, unit))
    if not values:
        report.unmapped["fit record without heart rate, cadence, speed or power"] += 1
        return
    if not isinstance(stamp, dt.datetime):
        yield _rejected(frame, "timestamp", "a record without a UTC timestamp", locator)
        return
    for code, value, unit in values:
        if not _finite(value):
            yield _rejected(frame, code, f"{code} {value!r} is not a number", locator)
            continue
        yield Sample(code, float(value), unit, stamp, source, locator)


def _session(
    frame: fitdecode.FitDataMessage, source: str, locator: str
) -> Iterator[Sample | Rejected]:
    start = _value(frame, "start_time")
    elapsed = _value(frame, "total_elapsed_time")
    if not isinstance(start, dt.datetime):
        yield _rejected(frame, "start_time", "a session without a UTC start_time", locator)
        return
    if not _finite(elapsed) or elapsed < 0:
        yield _rejected(frame, "total_elapsed_time", "a session without its duration", locator)
        return
    end = start + dt.timedelta(seconds=float(elapsed))
    sport = _value(frame, "sport")
    qualifier = sport if isinstance(sport, str) else "generic"
    minutes = float(elapsed) / 60
    yield Sample(
        "x-rejuve:workout", minutes, "min", start, source, locator, end=end, qualifier=qualifier
    )
    distance = _value(frame, "total_distance")
    if _finite(distance) and distance > 0:
        where = f"{locator}.total_distance"
        yield Sample("x-rejuve:distance", float(distance), "m", start, source, where, end=end)


def _device(frame: fitdecode.FitDataMessage) -> str | None:
    """ "garmin fenix6 (FIT)": maker and product as the FIT profile names them."""
    maker = _value(frame, "manufacturer")
    product = _value(frame, "garmin_product") or _value(frame, "product")
    parts = [str(p) for p in (maker, product) if p is not None]
    return f"{' '.join(parts)} (FIT)"[:120] if parts else None


def _rejected(frame: fitdecode.FitDataMessage, field: str, detail: str, locator: str) -> Rejected:
    record = {f.name: _plain(f.value) for f in frame.fields}
    return Rejected(
        "bad_value" if field != "timestamp" else "bad_timestamp", field, detail, locator, record
    )


def _plain(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
