"""The cohort's specification, its members, and the seeded random streams behind them."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class CohortSpec:
    members: int = 20
    days: int = 7
    seed: int = 42
    start: dt.datetime = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    # Share of records made invalid on purpose: an implausible value, a unit that does
    # not convert, a future timestamp, a missing value (where the format can say so).
    bad_rate: float = 0.01
    # Share of samples and batches repeated: the same measurement again, a resent batch,
    # an overlapping source.
    duplicate_rate: float = 0.01
    gap_rate: float = 0.05  # share of hours with no wearable data (device off)
    # Share of members whose watch samples heart rate every 5 minutes (battery saving)
    # instead of every minute; 0 gives per-minute heart rate for everyone.
    five_minute_hr_share: float = 0.2
    apple_exports: int = 3  # how many members (the first ones) also upload an export.xml
    # How many members also upload a Garmin Connect export, the FIT files of their
    # workouts and an Android Health Connect export (members without an injected episode
    # or a Fitbit export: see backend/synth/cohort.py).
    wearable_exports: int = 0
    # Share of members given one injected episode (backend/synth/episodes.py): ground
    # truth for measuring alert detection, listed in the manifest.
    episode_share: float = 0.0

    def __post_init__(self) -> None:
        if self.members < 0 or self.days < 1:
            raise ValueError("a cohort needs members >= 0 and days >= 1")
        if self.start.utcoffset() is None:
            raise ValueError("start must be time-zone aware")
        if self.start.second or self.start.microsecond:
            # Samples fall on whole minutes of the member's clock; a start between two
            # minutes would give the first day a partial minute.
            raise ValueError("start must be a whole minute")
        for name in (
            "bad_rate",
            "duplicate_rate",
            "gap_rate",
            "five_minute_hr_share",
            "episode_share",
        ):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {rate}")
        if self.apple_exports < 0 or self.wearable_exports < 0:
            raise ValueError("apple_exports and wearable_exports must be >= 0")

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(days=self.days)


def stream_rng(seed: int, *names: object) -> random.Random:
    """An independent random stream for one purpose (a member, one of its files).

    Each stream depends only on the seed and its names, never on which streams were
    used before, so one member's device data can be made without making the others'.
    `hash()` is salted per process, hence a real digest.
    """
    text = "\x1f".join(str(n) for n in (seed, *names))
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    # Seeds synthetic data only; nothing secret comes from it.
    return random.Random(int.from_bytes(digest, "big"))  # noqa: S311


_DEVICES = (
    # (device name, heart-rate unit, steps unit, respiratory-rate unit): units as each
    # vendor's SDK hands them over.
    ("Apple Watch Series 9 (watchOS 11.1) via Rejuve app", "count/min", "count", "count/min"),
    ("Garmin Venu 3 (firmware 12.40)", "/min", "{steps}", "/min"),
    ("Fitbit Charge 6 (v2.1)", "/min", "{steps}", "breaths/min"),
    ("Withings ScanWatch 2 (1.6.3)", "count/min", "{steps}", "/min"),
)
_OFFSETS = (0, 60, 60, 120, -300, -480, 330, 540)  # minutes east of UTC


@dataclass(frozen=True)
class Member:
    member_id: uuid.UUID
    sex: str  # "female" | "male" (FHIR administrative gender)
    birth_year: int
    resting_hr: float  # beats per minute
    weight_kg: float
    height_cm: float
    tz_offset_minutes: int  # the member's clock; diurnal rhythms follow it
    hr_every_minutes: int  # 1 or 5
    device: str
    hr_unit: str
    steps_unit: str
    rr_unit: str
    weight_unit: str  # what the member's scale and clinic write: "kg" or "lb"
    activity: float  # 0..1: how likely a workout is on a given day
    hrv_ms: float  # typical night-time SDNN
    systolic: float  # mm[Hg]
    diastolic: float
    glucose_mg_dl: float  # fasting
    hba1c: float  # %
    cholesterol: float  # total, mg/dL
    hdl: float  # mg/dL
    apple_export: bool  # also uploads an Apple Health export

    @property
    def short_id(self) -> str:
        # 48 random bits: batch ids are unique per source, so two members sharing a short
        # id would have one's batches replayed as the other's (8 hex digits collide at
        # ~1% in a 10k-member cohort).
        return self.member_id.hex[:12]

    @property
    def tz(self) -> dt.timezone:
        return dt.timezone(dt.timedelta(minutes=self.tz_offset_minutes))


def member(spec: CohortSpec, index: int) -> Member:
    """Member `index` of the cohort: the same whatever the cohort's size."""
    rng = stream_rng(spec.seed, "member", index)
    sex = rng.choice(("female", "male"))
    male = sex == "male"
    height = rng.gauss(177 if male else 164, 7)
    bmi = min(max(rng.gauss(26, 4), 18.0), 42.0)
    device, hr_unit, steps_unit, rr_unit = rng.choice(_DEVICES)
    hba1c = min(max(rng.gauss(5.5, 0.6), 4.2), 9.5)
    return Member(
        member_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        sex=sex,
        birth_year=rng.randint(1945, 2005),
        resting_hr=round(rng.uniform(50, 78), 1),
        weight_kg=round(bmi * (height / 100) ** 2, 1),
        height_cm=round(height, 1),
        tz_offset_minutes=rng.choice(_OFFSETS),
        hr_every_minutes=5 if rng.random() < spec.five_minute_hr_share else 1,
        device=device,
        hr_unit=hr_unit,
        steps_unit=steps_unit,
        rr_unit=rr_unit,
        weight_unit=rng.choice(("kg", "kg", "lb")),
        activity=round(rng.uniform(0.15, 0.85), 2),
        hrv_ms=round(rng.uniform(25, 75), 1),
        systolic=round(rng.gauss(124, 12)),
        diastolic=round(rng.gauss(79, 8)),
        glucose_mg_dl=round(min(max(rng.gauss(95, 12), 70), 180)),
        hba1c=round(hba1c, 1),
        cholesterol=round(rng.gauss(195, 30)),
        hdl=round(rng.gauss(50 if male else 62, 10)),
        apple_export=index < spec.apple_exports,
    )


def members(spec: CohortSpec) -> list[Member]:
    return [member(spec, i) for i in range(spec.members)]
