"""The cohort's wearable exports (`--wearable-exports`): Garmin Connect zips, FIT files
and Health Connect zips, read back by their own parsers to exactly the manifest's counts,
with faults that really fail and duplicates that really collide, none by accident with
the member's other sources.

No database: parse and normalise are called directly, as the refiner calls them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from backend.refine.normalise import Quarantined, normalise
from backend.synth.cohort import CohortSpec, Manifest, main, write_cohort
from tests.synth.test_cohort import parse, tree

WEARABLE = {"garmin", "fit", "health-connect"}
# Four members: the first uploads an Apple export, the next two a Fitbit export (see
# backend/synth/cohort.py), so the first and the last upload the wearable exports.
SPEC = CohortSpec(
    members=4,
    days=3,
    seed=3,
    bad_rate=0.15,
    duplicate_rate=0.2,
    five_minute_hr_share=1.0,
    apple_exports=1,
    wearable_exports=2,
)
NOW = SPEC.end + dt.timedelta(days=1)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    root = tmp_path_factory.mktemp("cohort")
    return root, write_cohort(SPEC, root)


def test_wearable_files_are_listed_and_the_same_spec_gives_the_same_bytes(
    cohort: tuple[Path, Manifest], tmp_path: Path
) -> None:
    root, manifest = cohort
    formats = Counter(f.format for f in manifest.files)
    assert formats["garmin"] == formats["health-connect"] == SPEC.wearable_exports
    assert formats["fit"] >= 1
    write_cohort(SPEC, tmp_path)
    assert tree(tmp_path) == tree(root)
    # without the option the cohort has none of them
    plain = write_cohort(dataclasses.replace(SPEC, wearable_exports=0), tmp_path / "plain")
    assert not {f.format for f in plain.files} & WEARABLE


def test_each_file_reads_back_to_its_counts_and_refines_as_the_manifest_says(
    cohort: tuple[Path, Manifest],
) -> None:
    root, manifest = cohort
    seen: set[bytes] = set()  # every format, in manifest order, as the processed zone keeps
    faults: dict[str, Counter[str]] = defaultdict(Counter)
    for entry in manifest.files:
        samples, rejected, report = parse(root / entry.path, entry.format, entry.options)
        quarantined = duplicates = 0
        for sample in samples:
            member = uuid.UUID(entry.member or sample.member_ref or "")
            result = normalise(sample, member, NOW)
            if isinstance(result, Quarantined):
                quarantined += 1
                continue
            assert SPEC.start <= result.observed_at < SPEC.end, (entry.path, result)
            duplicates += result.dedup_key in seen
            seen.add(result.dedup_key)
        if entry.format not in WEARABLE:
            continue
        got = (report.read, len(samples), len(rejected), sum(report.unmapped.values()))
        assert got == (entry.records, entry.samples, entry.rejected, entry.unmapped), entry.path
        assert (quarantined, duplicates) == (entry.quarantined, entry.duplicates), entry.path
        faults[entry.format].update(
            bad=entry.bad, rejected=entry.rejected, duplicates=entry.duplicates
        )
    # so that the checks above check something: every format carries each kind of fault
    for fmt in WEARABLE:
        assert min(faults[fmt].values()) > 0 and len(faults[fmt]) == 3, (fmt, faults[fmt])


def test_the_command_line_takes_the_option(tmp_path: Path) -> None:
    assert (
        main(["--out", str(tmp_path), "--members", "1", "--days", "1", "--wearable-exports", "1"])
        == 0
    )
    manifest = Manifest.load(tmp_path / "manifest.json")
    assert {"garmin", "health-connect"} <= {f.format for f in manifest.files}
