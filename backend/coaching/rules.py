"""The coaching rules: what makes a flag or an alert, each with an id, a version, a kind
and a sentence a coach can read.

- `generic` rules compare a recent value with a fixed threshold (clinical or guideline
  cut-offs, below);
- `personal` rules compare it with the member's own baseline: the median and MAD of the
  `BASELINE_DAYS` days before the recent window, and never fire on fewer than
  `MIN_BASELINE_DAYS` days with data (a new member, or one who rarely wears the device,
  has no baseline to leave).

A rule's `version` goes up whenever what makes it fire changes (threshold, window), so an
alert stored with version 1 stays explainable after version 2 ships."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["generic", "personal"]
Direction = Literal["above", "below"]

BASELINE_DAYS = 28
MIN_BASELINE_DAYS = 14
# The recent window a rule looks at: its median is the value compared.
RECENT_DAYS = 3
# A personal rule fires when the recent median leaves the baseline median by more than
# this many scaled MADs (1.4826 x MAD estimates the standard deviation of normal data)...
MAD_SCALE = 1.4826
PERSONAL_Z = 3.0
# After an alert of a personal rule, the same rule stays quiet for a member this many days,
# and then for as long as the flag keeps firing every day: an episode of several days is
# one alert, not one a day, while a new episode after a quiet day is alerted.
REFRACTORY_DAYS = 2
# A condition that lasts, and any generic rule's (a member whose blood pressure is simply
# high), is alerted once, then again only as a reminder after this many days.
REMIND_DAYS = 28


@dataclass(frozen=True)
class Rule:
    id: str
    version: int
    kind: Kind
    metric: str  # a column of analytics.member_daily, or a lab code for lab rules
    direction: Direction
    threshold: float  # generic: the cut-off; personal: the smallest change that counts
    unit: str
    code: str  # the LOINC (or x-rejuve) code the evidence is given in
    category: str  # the consent category the rule reads (the coach needs it granted)
    sentence: str
    # Generic rules: how many of the recent window's days must have data.
    min_days: int = 2
    window_days: int = RECENT_DAYS

    def threshold_text(self) -> str:
        if self.kind == "generic":
            sign = ">=" if self.direction == "above" else "<"
            return f"{self.window_days}-day median {sign} {self.threshold:g} {self.unit}"
        sign = ">" if self.direction == "above" else "<"
        change = "+" if self.direction == "above" else "-"
        return (
            f"{self.window_days}-day median {sign} baseline median {change}"
            f" max({PERSONAL_Z:g} x 1.4826 x MAD, {self.threshold:g} {self.unit})"
        )


RULES: tuple[Rule, ...] = (
    Rule(
        "rhr-high",
        1,
        "generic",
        "resting_hr",
        "above",
        100.0,
        "/min",
        "40443-4",
        "wearables",
        "Resting heart rate above 100 beats per minute (tachycardia) over recent days.",
    ),
    Rule(
        "sleep-short",
        1,
        "generic",
        "sleep_minutes",
        "below",
        300.0,
        "min",
        "93832-4",
        "sleep",
        "Less than 5 hours of sleep a night over recent nights.",
        min_days=3,
        window_days=5,
    ),
    Rule(
        "bp-high",
        1,
        "generic",
        "bp_systolic",
        "above",
        140.0,
        "mm[Hg]",
        "8480-6",
        "vitals",
        "Systolic blood pressure at or above 140 mm Hg (hypertension, stage 2) on average.",
        min_days=2,
        window_days=14,
    ),
    Rule(
        "bp-diastolic-high",
        1,
        "generic",
        "bp_diastolic",
        "above",
        90.0,
        "mm[Hg]",
        "8462-4",
        "vitals",
        "Diastolic blood pressure at or above 90 mm Hg (hypertension, stage 2) on average.",
        min_days=2,
        window_days=14,
    ),
    Rule(
        "rhr-up",
        1,
        "personal",
        "resting_hr",
        "above",
        5.0,
        "/min",
        "40443-4",
        "wearables",
        "Resting heart rate well above this member's own 28-day baseline"
        " (illness, overtraining, stress or poor sleep often show here first).",
    ),
    Rule(
        "hrv-down",
        1,
        "personal",
        "hrv_ms",
        "below",
        8.0,
        "ms",
        "80404-7",
        "wearables",
        "Heart rate variability well below this member's own 28-day baseline"
        " (a sign of strain or poor recovery).",
    ),
    Rule(
        "sleep-down",
        1,
        "personal",
        "sleep_minutes",
        "below",
        60.0,
        "min",
        "93832-4",
        "sleep",
        "Sleeping much less than this member's own 28-day baseline.",
    ),
)

# Lab and glucose rules are evaluated against the lab catalogue (backend/coaching/labs.py).
LAB_RULE = Rule(
    "lab-out-of-range",
    1,
    "generic",
    "labs",
    "above",
    0.0,
    "",
    "",
    "labs",
    "The latest lab result is outside its reference range.",
    min_days=1,
    window_days=90,
)
GLUCOSE_RULE = Rule(
    "glucose-high",
    1,
    "generic",
    "2339-0",
    "above",
    126.0,
    "mg/dL",
    "2339-0",
    "labs",
    "Fasting blood glucose at or above 126 mg/dL (7.0 mmol/L), the diabetes cut-off.",
    min_days=1,
    window_days=90,
)

BY_ID: dict[str, Rule] = {r.id: r for r in (*RULES, LAB_RULE, GLUCOSE_RULE)}
