"""Unit conversion to the catalog's canonical units: the conversions labs and devices need,
and the ones that must be refused rather than done wrong."""

from __future__ import annotations

import pytest

from backend.ingest.catalog import lookup
from backend.refine.units import UnitError, conversion_for


@pytest.mark.parametrize(
    ("code", "unit", "value", "expected"),
    [
        ("29463-7", "lb", 150, 68.0389),
        ("29463-7", "[lb_av]", 150, 68.0389),
        ("2339-0", "mmol/L", 5.5, 99.0858),
        ("15074-8", "mmol/L", 5.5, 99.0858),  # alias code folded onto 2339-0
        ("2339-0", "mmol<180.1558800000541>/L", 5.5, 99.0858),  # Apple's spelling
        ("2093-3", "mmol/L", 5.0, 193.325),  # cholesterol, European labs
        ("2571-8", "mmol/L", 1.0, 88.57),  # triglycerides
        ("2160-0", "umol/L", 88.4, 1.0000),  # creatinine
        ("8310-5", "degF", 98.6, 37.0),
        ("8310-5", "[degF]", 98.6, 37.0),
        ("8867-4", "count/min", 60, 60.0),
        ("8867-4", "{beats}/min", 60, 60.0),
        ("55423-8", "count", 1000, 1000.0),
        ("x-rejuve:distance", "mi", 1, 1.6093),
        ("39156-5", "count", 24.5, 24.5),  # Apple writes BMI as a count
        ("4548-4", "%", 6.1, 6.1),
    ],
)
def test_conversions(code: str, unit: str, value: float, expected: float) -> None:
    measure = lookup(code)
    assert measure is not None
    assert conversion_for(unit, measure.code).apply(value) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    ("code", "unit"),
    [
        ("4548-4", "mmol/mol"),  # IFCC HbA1c is not a rescaled percentage
        ("29463-7", "kg/m2"),
        ("8867-4", "kg"),
        ("2339-0", "furlongs"),
    ],
)
def test_refused(code: str, unit: str) -> None:
    measure = lookup(code)
    assert measure is not None
    with pytest.raises(UnitError):
        conversion_for(unit, measure.code)
    with pytest.raises(UnitError):  # and again, from the cache
        conversion_for(unit, measure.code)


_RACE = """
from concurrent.futures import ThreadPoolExecutor
from backend.refine import units
us = ["/min", "mg/dL", "mmol/L", "kg", "[lb_av]", "%", "ms", "cm", "Cel", "[degF]", "kcal"] * 4
with ThreadPoolExecutor(4) as pool:
    refused = [str(r) for r in pool.map(units.readable, us) if r is not None]
print(refused)
"""


@pytest.mark.parametrize("attempt", range(3))
def test_units_checked_from_several_threads_at_once_in_a_fresh_process(attempt: int) -> None:
    """The API checks units from its thread pool; pint's registry, built lazily, raised
    KeyError('bit') when four threads met it first, and the cached failure refused `/min`
    until a restart."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _RACE], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
