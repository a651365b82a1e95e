"""What a parser made of an input, split as the tests of the formats compare it."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable, Iterator

from backend.ingest.model import ParseReport, Rejected, Sample

Parser = Callable[..., Iterator[Sample | Rejected]]


def parse_bytes(
    parser: Parser, data: bytes, name: str
) -> tuple[list[Sample], list[Rejected], ParseReport]:
    """`parser(data, report, name=name)` run to its end: samples, rejections, report."""
    report = ParseReport()
    out = list(parser(io.BytesIO(data), report, name=name))
    return (
        [o for o in out if isinstance(o, Sample)],
        [o for o in out if isinstance(o, Rejected)],
        report,
    )


def streamed(parser: Parser, data: bytes, name: str) -> tuple[int, ParseReport, int]:
    """`parser` run over `data` keeping nothing it yields: how many outcomes, the report,
    and the peak of Python allocations meanwhile (tracemalloc)."""
    report = ParseReport()
    tracemalloc.start()
    try:
        count = sum(1 for _ in parser(io.BytesIO(data), report, name=name))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return count, report, peak
