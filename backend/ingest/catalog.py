"""The measurements the platform knows: LOINC code, canonical UCUM unit, plausible range.

Codes without a LOINC term of their own use the `x-rejuve:` prefix, so nobody mistakes
them for LOINC."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Measure:
    code: str
    name: str
    unit: str  # canonical UCUM unit
    low: float  # plausible range, inclusive, in the canonical unit
    high: float
    category: str  # consent data category: "wearables", "labs", "vitals", "sleep", "activity"
    # Molar mass (g/mol) for analytes reported both by mass and by amount of substance.
    molar_mass: float | None = None
    # "coded": the result is a concept or text (a PCR "Detected"), never a number; its unit
    # is "" and low/high are unused.
    value_type: Literal["quantity", "coded"] = "quantity"


_MEASURES = [
    Measure("8867-4", "heart rate", "/min", 20, 250, "wearables"),
    Measure("40443-4", "resting heart rate", "/min", 20, 200, "wearables"),
    Measure(
        "x-rejuve:walking-heart-rate-average",
        "walking heart rate average",
        "/min",
        30,
        220,
        "wearables",
    ),
    Measure("80404-7", "heart rate variability (SDNN)", "ms", 1, 500, "wearables"),
    Measure("55423-8", "step count", "{steps}", 0, 100_000, "activity"),
    Measure("41950-7", "steps in 24 hours", "{steps}", 0, 150_000, "activity"),
    Measure("x-rejuve:distance", "walking + running distance", "km", 0, 300, "activity"),
    Measure("41981-2", "active energy burned", "kcal", 0, 10_000, "activity"),
    Measure("x-rejuve:basal-energy", "basal energy burned", "kcal", 0, 5_000, "activity"),
    Measure("29463-7", "body weight", "kg", 2, 400, "vitals"),
    Measure("8302-2", "body height", "cm", 40, 250, "vitals"),
    Measure("41982-0", "body fat percentage", "%", 2, 75, "vitals"),
    Measure("39156-5", "body mass index", "kg/m2", 10, 80, "vitals"),
    Measure("8480-6", "systolic blood pressure", "mm[Hg]", 50, 260, "vitals"),
    Measure("8462-4", "diastolic blood pressure", "mm[Hg]", 25, 160, "vitals"),
    Measure("2339-0", "glucose in blood", "mg/dL", 10, 1000, "labs", molar_mass=180.156),
    Measure("59408-5", "oxygen saturation (pulse oximetry)", "%", 50, 100, "wearables"),
    Measure("9279-1", "respiratory rate", "/min", 3, 80, "wearables"),
    Measure("8310-5", "body temperature", "Cel", 30, 45, "vitals"),
    Measure("93832-4", "sleep duration", "h", 0, 24, "sleep"),
    Measure("x-rejuve:sleep-stage", "sleep episode (stage in qualifier)", "min", 0, 1440, "sleep"),
    Measure("x-rejuve:workout", "workout duration (type in qualifier)", "min", 0, 1440, "activity"),
    # Labs commonly seen in CSV and FHIR lab feeds.
    Measure("4548-4", "hemoglobin A1c", "%", 2, 20, "labs"),
    Measure("2093-3", "cholesterol total", "mg/dL", 50, 500, "labs", molar_mass=386.65),
    Measure("2085-9", "HDL cholesterol", "mg/dL", 5, 200, "labs", molar_mass=386.65),
    Measure("13457-7", "LDL cholesterol (calculated)", "mg/dL", 5, 400, "labs", molar_mass=386.65),
    # Triglycerides as triolein, the convention behind 1 mmol/L = 88.57 mg/dL.
    Measure("2571-8", "triglycerides", "mg/dL", 10, 5000, "labs", molar_mass=885.7),
    Measure("2160-0", "creatinine", "mg/dL", 0.1, 20, "labs", molar_mass=113.12),
    Measure("1988-5", "C reactive protein", "mg/L", 0, 500, "labs"),
    Measure("718-7", "hemoglobin", "g/dL", 2, 25, "labs"),
    # Wearable measures without a LOINC term, from Garmin exports and FIT files (issue 11).
    Measure(
        "x-rejuve:stress-level", "stress level (Garmin, 0-100)", "{score}", 0, 100, "wearables"
    ),
    Measure(
        "x-rejuve:cadence",
        "cadence (strides or pedal turns per minute)",
        "/min",
        0,
        300,
        "activity",
    ),
    Measure("x-rejuve:speed", "speed", "m/s", 0, 100, "activity"),
    Measure("x-rejuve:power", "power output", "W", 0, 3000, "activity"),
    # Fitbit (issue 11): no LOINC term for either. Fitbit's calories include the basal
    # rate; its HRV is RMSSD, not the SDNN of 80404-7.
    Measure("x-rejuve:total-energy", "total energy expended", "kcal", 0, 15_000, "activity"),
    Measure("x-rejuve:hrv-rmssd", "heart rate variability (RMSSD)", "ms", 1, 500, "wearables"),
    # Coded lab results (a concept such as SNOMED 260373001 "Detected", or text).
    *(
        Measure(code, name, "", 0, 0, "labs", value_type="coded")
        for code, name in (
            ("94500-6", "SARS-CoV-2 RNA (NAA, presence)"),
            ("94309-2", "SARS-CoV-2 RNA (NAA+probe, presence)"),
            ("94558-4", "SARS-CoV-2 antigen (immunoassay, presence)"),
            ("94531-1", "SARS-CoV-2 RNA panel (NAA+probe)"),  # Synthea's COVID-19 test
        )
    ),
]

CATALOG: dict[str, Measure] = {m.code: m for m in _MEASURES}

# Codes that mean the same thing in another unit family: folded onto the catalog code
# above before conversion (e.g. glucose reported in mmol/L under its own LOINC code).
ALIASES: dict[str, str] = {
    "15074-8": "2339-0",  # Glucose [Moles/volume] in Blood
    "2345-7": "2339-0",  # Glucose [Mass/volume] in Serum or Plasma
    "14749-6": "2339-0",  # Glucose [Moles/volume] in Serum or Plasma
    "2708-6": "59408-5",  # Oxygen saturation in Arterial blood
    "3141-9": "29463-7",  # Body weight Measured
    "8331-1": "8310-5",  # Oral temperature
}


def lookup(code: str) -> Measure | None:
    return CATALOG.get(ALIASES.get(code, code))


# A LOINC code: up to 7 digits, a hyphen, the mod-10 check digit.
# The shape of a LOINC code (digits, a dash, the check digit); `is_loinc` checks the digit.
LOINC_SHAPE = re.compile(r"^\d{1,7}-\d$")

UNCATALOGUED = "uncatalogued"
"""The flag of a row whose LOINC code is not in the catalog: stored as the source sent it
(a numeric one needs a valid UCUM unit), with no plausible range and no consent category,
so only the member sees it until the catalog learns the code."""


def is_loinc(code: str) -> bool:
    """A well-formed LOINC code with a correct check digit (mod 10, as LOINC defines it)."""
    if not LOINC_SHAPE.match(code):
        return False
    digits, check = code.split("-")
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d // 10 + d % 10
        total += d
    return (10 - total % 10) % 10 == int(check)
