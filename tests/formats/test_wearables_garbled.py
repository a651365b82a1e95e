"""Garbled Garmin, FIT and Health Connect inputs (bytes flipped, files cut short, seeded)
end in a result or in one FormatError line: never another exception, which the refiner
would retry and dead-letter without saying what is wrong with the file.

None of these tests needs the local stack."""

from __future__ import annotations

import io
import random
from collections.abc import Callable

import pytest

from backend.ingest.formats import fit, garmin, health_connect
from backend.ingest.model import FormatError, ParseReport
from tests.formats import test_fit, test_garmin, test_health_connect
from tests.formats.outcomes import Parser

INPUTS: dict[str, tuple[Parser, Callable[[], bytes]]] = {
    "garmin": (garmin.parse, test_garmin.export_zip),
    "fit": (fit.parse, test_fit.activity),
    "health-connect": (
        health_connect.parse,
        lambda: test_health_connect.zipped(test_health_connect.database()),
    ),
}


@pytest.mark.parametrize("fmt", sorted(INPUTS))
def test_garbled_input_ends_in_one_line(fmt: str) -> None:
    parse, make = INPUTS[fmt]
    original = make()
    rng = random.Random(fmt)  # noqa: S311 (seeded: the same garbling every run)
    refused = 0
    for _ in range(150):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        try:
            for _ in parse(io.BytesIO(bytes(data)), ParseReport(), name="input"):
                pass
        except FormatError as err:
            refused += 1
            assert "\n" not in str(err) and str(err).startswith("input")
    assert refused > 0
