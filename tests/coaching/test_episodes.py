"""Episodes injected by the cohort generator: listed in the manifest as ground truth, seen
in the data the parsers read back (resting heart rate up, HRV down, nights cut short on
exactly the episode's days), and nothing changed for a member without one."""

from __future__ import annotations

import datetime as dt
import io
import statistics
from collections import defaultdict
from pathlib import Path

from backend.ingest.formats.registry import get
from backend.ingest.model import ParseReport, Sample
from backend.synth import omh
from backend.synth.cohort import write_cohort
from backend.synth.device import device_batches
from backend.synth.episodes import KINDS, SLEEP_CUT_MINUTES, Episode, episodes
from backend.synth.fhir import bundle
from backend.synth.manifest import Manifest
from backend.synth.members import CohortSpec, Member, members

SPEC = CohortSpec(
    members=12, days=36, seed=3, five_minute_hr_share=1.0, apple_exports=0, episode_share=0.6
)


def _samples(spec: CohortSpec, member: Member) -> list[Sample]:
    out: list[Sample] = []
    for body in device_batches(spec, member):
        out += [
            s
            for s in get("device-batch").parse(io.BytesIO(body), ParseReport(), name="d")
            if isinstance(s, Sample)
        ]
    points, _ = omh.points(spec, member, bundle(spec, member)[2])
    out += [
        s
        for s in get("omh").parse(io.BytesIO(points), ParseReport(), name="o")
        if isinstance(s, Sample)
    ]
    return out


def _by_local_day(member: Member, samples: list[Sample], code: str) -> dict[dt.date, list[Sample]]:
    days: dict[dt.date, list[Sample]] = defaultdict(list)
    for s in samples:
        if s.code == code:
            days[(s.end or s.start).astimezone(member.tz).date()].append(s)
    return days


def test_the_manifest_lists_the_episodes(tmp_path: Path) -> None:
    manifest = write_cohort(SPEC, tmp_path)
    found = Manifest.load(tmp_path / "manifest.json").episodes
    assert found == manifest.episodes and len(found) >= 3
    assert {e.kind for e in found} <= set(KINDS)
    for e in found:
        assert 4 <= e.days <= 6 and e.detected_by == KINDS[e.kind]
        first = SPEC.start.date() - dt.timedelta(days=1)  # a member's clock may lag UTC
        assert first + dt.timedelta(days=21) <= e.start <= SPEC.end.date() - dt.timedelta(days=7)
    # A cohort too short for a baseline gets none.
    assert all(not episodes(CohortSpec(days=20, episode_share=1.0), m) for m in members(SPEC))


def test_the_data_shows_the_episode_and_only_there() -> None:
    cohort = members(SPEC)
    seen: set[str] = set()
    for member in cohort:
        (e,) = episodes(SPEC, member) or (None,)
        if e is None or e.kind in seen:
            continue
        seen.add(e.kind)
        _check(member, e, _samples(SPEC, member))
    assert seen == set(KINDS), "the seed gives every kind"


def _check(member: Member, e: Episode, samples: list[Sample]) -> None:
    def mean(code: str, inside: bool) -> float:
        # A median: the generator's faults (implausible values, far-future clocks) are in.
        days = _by_local_day(member, samples, code)
        return statistics.median(
            s.value for d, ss in days.items() if e.covers(d) == inside for s in ss
        )

    if e.kind == "rhr-elevation":
        assert mean("40443-4", True) - mean("40443-4", False) > 8
    if e.kind in ("rhr-elevation", "hrv-drop"):
        assert mean("80404-7", True) < 0.85 * mean("80404-7", False)
    if e.kind == "sleep-loss":
        nights = _by_local_day(member, samples, "x-rejuve:sleep-stage")
        asleep = {
            d: sum(s.value for s in ss if (s.qualifier or "").startswith("asleep"))
            for d, ss in nights.items()
        }
        inside = statistics.median(v for d, v in asleep.items() if e.covers(d))
        outside = statistics.median(v for d, v in asleep.items() if not e.covers(d) and v > 0)
        # Both sources (device stages, Open mHealth episodes) lose the cut.
        assert outside - inside > 1.5 * SLEEP_CUT_MINUTES


def test_members_without_an_episode_are_unchanged() -> None:
    plain = CohortSpec(**{**SPEC.__dict__, "episode_share": 0.0})
    for member in members(SPEC):
        if episodes(SPEC, member):
            continue
        assert list(device_batches(SPEC, member)) == list(device_batches(plain, member))
        shared = bundle(SPEC, member)[2]
        assert omh.points(SPEC, member, shared) == omh.points(plain, member, shared)
        return
    raise AssertionError("the seed leaves some member without an episode")
