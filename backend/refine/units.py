"""Unit conversion to each measure's canonical UCUM unit.

UCUM codes are parsed by ucumvert into pint quantities; the spellings Apple Health and
Open mHealth use instead of UCUM are translated first. A conversion is worked out once
per (unit, code) and then applied as `value * factor + offset`: pint per sample would
cost more than the whole rest of refinement."""

from __future__ import annotations

import functools
import math
import re
import threading
from dataclasses import dataclass
from typing import Any, cast

import pint
from ucumvert import PintUcumRegistry

from backend.ingest.catalog import CATALOG, Measure

# Non-UCUM spellings seen in real sources -> UCUM.
SPELLINGS: dict[str, str] = {
    "count/min": "/min",
    "beats/min": "/min",
    "bpm": "/min",
    "breaths/min": "/min",
    "count": "1",
    "steps": "1",
    "mmHg": "mm[Hg]",
    "kg/m^2": "kg/m2",  # Open mHealth body-mass-index
    # International units as labs write them (UCUM brackets them: [IU]).
    "IU/L": "[IU]/L",
    "mIU/L": "m[IU]/L",
    "uIU/mL": "u[IU]/mL",
    "µIU/mL": "u[IU]/mL",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
    "oz": "[oz_av]",
    "in": "[in_i]",
    "ft": "[ft_i]",
    "mi": "[mi_i]",
    "degC": "Cel",
    "degF": "[degF]",
    "C": "Cel",
    "F": "[degF]",
    "Cal": "kcal",
    "kCal": "kcal",
    "sec": "s",
    "hr": "h",
    "mg/dl": "mg/dL",
    "mmol/l": "mmol/L",
}
# Spellings that only mean something for one code: Apple writes BMI with the unit "count".
CODE_SPELLINGS: dict[tuple[str, str], str] = {
    ("39156-5", "count"): "kg/m2",
}
# Apple writes glucose in mmol with the molar mass inline: "mmol<180.1558800000541>/L".
_APPLE_MOLAR = re.compile(r"<[0-9.]+>")
# A unit that is only a UCUM annotation ("{steps}", "{beats}") is the unity "1".
_ANNOTATION_ONLY = re.compile(r"^\{[^}]*\}$")


class UnitError(ValueError):
    """The unit is unknown, or cannot be converted to the measure's unit."""


@dataclass(frozen=True)
class Conversion:
    factor: float
    offset: float

    def apply(self, value: float) -> float:
        return value * self.factor + self.offset


# pint builds its registry's caches lazily and not thread-safely: four API threads
# checking units at once raised KeyError('bit'), and the failure, cached, refused `/min`
# until a restart. Every use of the registry holds this lock; the results are cached, so
# it is taken only on a unit's first sight.
_LOCK = threading.RLock()


@functools.lru_cache(maxsize=1)
def _registry() -> PintUcumRegistry:
    with _LOCK:
        return PintUcumRegistry()


def to_ucum(unit: str) -> str:
    u = unit.strip()
    u = SPELLINGS.get(u, u)
    u = _APPLE_MOLAR.sub("", u)
    if _ANNOTATION_ONLY.match(u) or u == "":
        return "1"
    return u


def _quantity(ucum: str) -> pint.Quantity[Any]:
    reg = _registry()
    if ucum == "1":
        return cast(pint.Quantity[Any], reg.Quantity(1, "dimensionless"))
    try:
        q = reg.from_ucum(ucum)
        # `10*999/min` parses, to a factor no float holds: it would overflow later.
        finite = isinstance(q, pint.Quantity) and math.isfinite(float(q.to_base_units().magnitude))
    except Exception as e:  # ucumvert raises lark, pint and overflow errors alike
        raise UnitError(f"unknown unit '{ucum}'") from e
    if not finite:
        raise UnitError(f"unknown unit '{ucum}'")
    return cast(pint.Quantity[Any], q)


@functools.lru_cache(maxsize=4096)
def readable(unit: str) -> UnitError | None:
    """None if `unit` parses as a unit at all (whatever it measures), else why not: the
    ingestion API refuses what no measure could ever be converted from."""
    try:
        with _LOCK:
            _quantity(to_ucum(unit))
    except UnitError as e:
        return e
    return None


@functools.lru_cache(maxsize=4096)
def _ucum_or_error(unit: str) -> str | UnitError:
    ucum = to_ucum(unit)
    if unit.strip() == "":
        return UnitError("no unit: a number outside the catalog needs a UCUM unit")
    try:
        with _LOCK:
            _quantity(ucum)
    except UnitError as e:
        return e
    # As written (translated from a known non-UCUM spelling), annotations kept: "{cells}/uL".
    return SPELLINGS.get(unit.strip(), unit.strip())


def ucum_unit(unit: str) -> str:
    """`unit` as a valid UCUM code (common spellings translated), for a code outside the
    catalog that has no canonical unit to convert to; UnitError if it is no unit."""
    result = _ucum_or_error(unit)
    if isinstance(result, UnitError):
        raise result
    return result


def conversion_for(unit: str, code: str) -> Conversion:
    """`conversion` keyed by strings: hashing two short strings per sample is far cheaper
    than hashing the Measure dataclass."""
    result = _cached(unit, code)
    if isinstance(result, UnitError):
        raise result
    return result


@functools.lru_cache(maxsize=4096)
def _cached(unit: str, code: str) -> Conversion | UnitError:
    # Failures are cached too: a file full of one bad unit must not re-parse it per sample.
    try:
        with _LOCK:
            return conversion(CODE_SPELLINGS.get((code, unit), unit), CATALOG[code])
    except UnitError as e:
        return e


def conversion(unit: str, measure: Measure) -> Conversion:
    """How to turn a value in `unit` into the measure's canonical unit."""
    if measure.unit == "%" and to_ucum(unit) != "%":
        # pint would turn mmol/mol into a fraction, but HbA1c in IFCC units (mmol/mol) is
        # not a rescaled % (NGSP): refuse rather than convert wrongly.
        raise UnitError(f"'{unit}' cannot be converted to % ({measure.name}): send %")
    src = _quantity(to_ucum(unit))
    dst = _quantity(to_ucum(measure.unit))
    reg = _registry()
    try:
        if src.dimensionality == dst.dimensionality:
            # Two points give factor and offset, which affine units (temperatures) need.
            a = reg.Quantity(0 * src.magnitude, src.units).to(dst.units).magnitude
            b = reg.Quantity(1 * src.magnitude, src.units).to(dst.units).magnitude
            return Conversion(float(b - a) / dst.magnitude, float(a) / dst.magnitude)
        if measure.molar_mass:
            # mmol/L <-> mg/dL and the like: through the analyte's molar mass.
            molar = _quantity("g/mol") * measure.molar_mass
            for scaled in (src * molar, src / molar):
                if scaled.dimensionality == dst.dimensionality:
                    factor = scaled.to(dst.units).magnitude / dst.magnitude
                    return Conversion(float(factor), 0.0)
    except (pint.DimensionalityError, ArithmeticError):
        pass
    raise UnitError(f"'{unit}' cannot be converted to {measure.unit} ({measure.name})")
