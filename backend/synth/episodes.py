"""Episodes injected into a synthetic cohort, for measuring alert detection against known
ground truth (`bench/alerts.py`): a few days on which a member's body changes the way
coaching rules are meant to notice.

- `rhr-elevation`: resting heart rate +12 /min (every activity state's heart rate with
  it) and night-time HRV at 80 %: how an infection or overreaching often looks;
- `hrv-drop`: night-time HRV at 60 %;
- `sleep-loss`: nights cut by 3 hours (the member wakes 3 hours early).

`CohortSpec.episode_share` of the members (chosen by the seed) get one episode each, of
4 to 6 days starting on a random local date at least `EARLIEST_DAY` days into the
timeline (the personal rules need a baseline first) and ending a week before its end.
Cohorts shorter than `MIN_COHORT_DAYS` get none. Only the streams that carry these
measures are changed (device batches, Open mHealth points); Apple exports are not.
The same spec gives the same episodes; a member without one gets the same bytes as with
`episode_share = 0` (episodes are drawn from their own random stream)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from backend.synth.members import CohortSpec, Member, stream_rng

# Kind -> the rules (backend/coaching/rules.py) whose alert counts as detecting it.
KINDS: dict[str, tuple[str, ...]] = {
    "rhr-elevation": ("rhr-up", "rhr-high", "hrv-down"),
    "hrv-drop": ("hrv-down",),
    "sleep-loss": ("sleep-down", "sleep-short"),
}
RHR_DELTA = 12.0  # /min
RHR_HRV_FACTOR = 0.8
HRV_FACTOR = 0.6
SLEEP_CUT_MINUTES = 180
EARLIEST_DAY = 21
MIN_COHORT_DAYS = EARLIEST_DAY + 14


@dataclass(frozen=True)
class Episode:
    member_id: uuid.UUID
    kind: str
    start: dt.date  # the member's local date
    days: int

    @property
    def end(self) -> dt.date:
        """The last day (inclusive)."""
        return self.start + dt.timedelta(days=self.days - 1)

    @property
    def detected_by(self) -> tuple[str, ...]:
        return KINDS[self.kind]

    def covers(self, date: dt.date) -> bool:
        return self.start <= date <= self.end

    def to_json(self) -> dict[str, Any]:
        return {
            "member_id": str(self.member_id),
            "kind": self.kind,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "days": self.days,
            "detected_by": list(self.detected_by),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Episode:
        return cls(
            uuid.UUID(raw["member_id"]),
            raw["kind"],
            dt.date.fromisoformat(raw["start"]),
            int(raw["days"]),
        )


@dataclass(frozen=True)
class Effect:
    """What an episode does to one local date: added to resting heart rate, a factor on
    HRV, minutes cut from the night that ends that morning."""

    rhr: float = 0.0
    hrv: float = 1.0
    sleep_cut: int = 0


NONE = Effect()


def episodes(spec: CohortSpec, member: Member) -> tuple[Episode, ...]:
    if spec.episode_share <= 0 or spec.days < MIN_COHORT_DAYS:
        return ()
    rng = stream_rng(spec.seed, "episode", member.member_id)
    if rng.random() >= spec.episode_share:
        return ()
    first = spec.start.astimezone(member.tz).date()
    kind = rng.choice(sorted(KINDS))
    length = rng.randint(4, 6)
    start = first + dt.timedelta(days=rng.randrange(EARLIEST_DAY, spec.days - length - 7))
    return (Episode(member.member_id, kind, start, length),)


def effect(found: tuple[Episode, ...], date: dt.date) -> Effect:
    for e in found:
        if e.covers(date):
            if e.kind == "rhr-elevation":
                return Effect(rhr=RHR_DELTA, hrv=RHR_HRV_FACTOR)
            if e.kind == "hrv-drop":
                return Effect(hrv=HRV_FACTOR)
            return Effect(sleep_cut=SLEEP_CUT_MINUTES)
    return NONE
