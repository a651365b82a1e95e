"""Bad and repeated records for the small, record-by-record formats (FHIR, Open mHealth,
lab CSV, Apple Health); the device stream places its own faults, faster."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass

from backend.ingest.catalog import lookup
from backend.synth.members import CohortSpec

# Far enough ahead that no refinement run will be that late: a device or lab system
# whose clock was set decades ahead.
FUTURE = dt.timedelta(days=10_000)


@dataclass(frozen=True)
class Faults:
    rng: random.Random
    spec: CohortSpec

    def bad(self) -> bool:
        return self.rng.random() < self.spec.bad_rate

    def duplicate(self) -> bool:
        return self.rng.random() < self.spec.duplicate_rate

    def pick(self, kinds: Sequence[str]) -> str:
        return self.rng.choice(kinds)


def implausible(code: str) -> float:
    """A value three times the catalog's upper bound: out of range in any unit we write
    (even pounds for a weight limit in kilograms)."""
    measure = lookup(code)
    if measure is None:
        raise KeyError(code)
    return measure.high * 3


def wrong_unit(code: str) -> str:
    """A unit of another dimension than the measure's, so no conversion exists."""
    measure = lookup(code)
    return "mm[Hg]" if measure is not None and measure.unit in ("kg", "g") else "kg"
