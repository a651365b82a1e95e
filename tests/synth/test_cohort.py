"""The synthetic cohort: byte-for-byte determinism, every file read back by its own parser
to exactly the manifest's counts, faults that really fail and duplicates that really
collide in the refiner, and wearable data that looks like a day of a human.

No database: parse and normalise are called directly, as the refiner calls them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from backend.ingest.formats.device_batch import MAX_SAMPLES, DeviceBatch
from backend.ingest.formats.registry import get
from backend.ingest.model import ParseReport, Rejected, Sample
from backend.refine.normalise import Quarantined, dedup_key, normalise
from backend.synth.apple import APPLE_DTD
from backend.synth.cohort import (
    CohortSpec,
    Manifest,
    apple_export,
    device_batches,
    main,
    members,
    write_cohort,
)

# Small, with faults and repeats frequent enough that every format has some (at these
# sizes a seed can leave one format without; seed 1 does not, which a test checks). Heart
# rate every 5 minutes keeps the device files small: each unconvertible unit costs the
# normaliser a UCUM parse (failed conversions are not cached), the bulk of this file's time.
SPEC = CohortSpec(
    members=3,
    days=2,
    seed=1,
    bad_rate=0.15,
    duplicate_rate=0.15,
    gap_rate=0.1,
    five_minute_hr_share=1.0,
    apple_exports=1,
)
NOW = SPEC.end + dt.timedelta(days=1)  # when the refiner runs: after the timeline
FORMATS = {"device-batch", "fhir", "omh", "apple-health", "csv-lab", "fitbit"}
QUARANTINE_REASONS = {"implausible", "unit_not_convertible", "future_timestamp"}
REJECT_REASONS = {"missing_value", "bad_value", "bad_interval", "schema_invalid"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    root = tmp_path_factory.mktemp("cohort")
    return root, write_cohort(SPEC, root)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def parse(
    path: Path, fmt: str, options: dict[str, str] | None = None
) -> tuple[list[Sample], list[Rejected], ParseReport]:
    report = ParseReport()
    with path.open("rb") as data:
        out = list(get(fmt).parse(data, report, name=path.name, options=options))
    samples = [o for o in out if isinstance(o, Sample)]
    rejected = [o for o in out if isinstance(o, Rejected)]
    assert len(samples) + len(rejected) == len(out)
    return samples, rejected, report


def test_same_seed_same_bytes_another_seed_other_bytes(
    cohort: tuple[Path, Manifest], tmp_path: Path
) -> None:
    root, _ = cohort
    write_cohort(SPEC, tmp_path / "again")
    assert tree(tmp_path / "again") == tree(root)

    write_cohort(dataclasses.replace(SPEC, seed=2), tmp_path / "other")
    ours, theirs = tree(root), tree(tmp_path / "other")
    assert ours["labs.csv"] != theirs["labs.csv"]
    assert ours["manifest.json"] != theirs["manifest.json"]
    assert not {m.member_id for m in members(SPEC)} & {
        m.member_id for m in members(dataclasses.replace(SPEC, seed=2))
    }


def test_manifest_lists_every_file_and_reads_back(cohort: tuple[Path, Manifest]) -> None:
    root, manifest = cohort
    assert {f.path for f in manifest.files} | {"manifest.json"} == set(tree(root))
    assert Manifest.load(root / "manifest.json") == manifest
    assert {f.format for f in manifest.files} == FORMATS
    assert manifest.members == tuple(members(SPEC))
    # Every format carries faults and repeats, so the checks below check something.
    by_format: dict[str, Counter[str]] = defaultdict(Counter)
    for f in manifest.files:
        by_format[f.format].update(bad=f.bad, duplicates=f.duplicates, rejected=f.rejected)
    for fmt, counts in by_format.items():
        assert counts["bad"] > 0 and counts["duplicates"] > 0, fmt
        if fmt != "device-batch":  # a batch that fails validation would be refused whole
            assert counts["rejected"] > 0, fmt
    assert any(f.resend_of for f in manifest.files)


def test_every_file_parses_to_the_manifests_counts(cohort: tuple[Path, Manifest]) -> None:
    root, manifest = cohort
    for entry in manifest.files:
        samples, rejected, report = parse(root / entry.path, entry.format, entry.options)
        got = (report.read, len(samples), len(rejected), sum(report.unmapped.values()))
        assert got == (entry.records, entry.samples, entry.rejected, entry.unmapped), entry.path
        assert {r.reason for r in rejected} <= REJECT_REASONS, entry.path


def test_good_samples_normalise_bad_ones_do_not_and_duplicates_share_a_key(
    cohort: tuple[Path, Manifest],
) -> None:
    root, manifest = cohort
    seen: set[bytes] = set()  # across files, in manifest order, as the processed zone keeps
    for entry in manifest.files:
        samples, _, _ = parse(root / entry.path, entry.format, entry.options)
        quarantined = duplicates = 0
        for sample in samples:
            member = uuid.UUID(entry.member or sample.member_ref or "")
            result = normalise(sample, member, NOW)
            if isinstance(result, Quarantined):
                assert result.reason in QUARANTINE_REASONS, (entry.path, result)
                quarantined += 1
                continue
            assert SPEC.start <= result.observed_at < SPEC.end, (entry.path, result)
            key = dedup_key(
                member,
                result.code,
                result.observed_at,
                result.ended_at,
                result.qualifier,
                result.value,
                result.coded,
            )
            assert key == result.dedup_key
            duplicates += key in seen
            seen.add(key)
        assert (quarantined, duplicates) == (entry.quarantined, entry.duplicates), entry.path
        assert entry.processed == len(samples) - quarantined - duplicates


def test_device_batches_validate_and_resends_repeat_their_batch(
    cohort: tuple[Path, Manifest],
) -> None:
    root, manifest = cohort
    for entry in manifest.files:
        if entry.format != "device-batch":
            continue
        body = (root / entry.path).read_bytes()
        batch = DeviceBatch.model_validate_json(body)  # as the API reads it
        assert batch.batch_id == entry.batch_id
        assert str(batch.member_id) == entry.member
        assert 0 < len(batch.samples) <= MAX_SAMPLES
        if entry.resend_of:
            assert body == (root / entry.resend_of).read_bytes()
    ids = [f.batch_id for f in manifest.files if f.batch_id and not f.resend_of]
    assert len(ids) == len(set(ids))


def test_device_batches_stream_the_same_bodies_as_the_files(
    cohort: tuple[Path, Manifest],
) -> None:
    root, manifest = cohort
    member = manifest.members[0]
    written = [
        (root / f.path).read_bytes()
        for f in manifest.files
        if f.format == "device-batch" and f.member == str(member.member_id)
    ]
    assert list(device_batches(SPEC, member)) == written
    with pytest.raises(ValueError, match="samples_per_batch"):
        next(device_batches(SPEC, member, samples_per_batch=MAX_SAMPLES + 1))


def hr_by_hour(spec: CohortSpec) -> dict[int, list[float]]:
    by_hour: dict[int, list[float]] = defaultdict(list)
    for member in members(spec):
        for body in device_batches(spec, member):
            for s in json.loads(body)["samples"]:
                if s["code"] == "8867-4":
                    by_hour[dt.datetime.fromisoformat(s["start"]).hour].append(s["value"])
    return by_hour


def test_wearable_day_has_a_rhythm() -> None:
    spec = CohortSpec(members=2, days=3, seed=11, bad_rate=0, duplicate_rate=0, gap_rate=0)
    by_hour = hr_by_hour(spec)
    night = [v for h in range(1, 5) for v in by_hour[h]]
    day = [v for h in range(10, 20) for v in by_hour[h]]
    assert sum(night) / len(night) + 10 < sum(day) / len(day)

    units: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    for member in members(spec):
        per_minute = 0
        for body in device_batches(spec, member):
            for s in json.loads(body)["samples"]:
                hour = dt.datetime.fromisoformat(s["start"]).hour
                units[f"{s['code']} {s['unit']}"] += 1
                per_minute += s["code"] == "8867-4"
                if s["code"] == "55423-8" and 1 <= hour < 5:
                    assert s["value"] == 0, s  # asleep
                if s["code"] == "80404-7":
                    assert hour >= 22 or hour < 8, s  # SDNN is a night-time reading
                if s["code"] == "59408-5":
                    assert 90 <= s["value"] <= 100
                if s["code"] == "x-rejuve:sleep-stage":
                    stages[s["qualifier"]] += 1
                    start, end = (dt.datetime.fromisoformat(s[k]) for k in ("start", "end"))
                    assert (end - start).total_seconds() == s["value"] * 60
        assert per_minute == spec.days * 1440 / member.hr_every_minutes  # gap_rate 0
    assert set(stages) == {"asleep_core", "asleep_deep", "asleep_rem", "awake"}
    assert {"8867-4 count/min", "8867-4 /min"} <= set(units)


def test_gap_rate_leaves_hours_without_data() -> None:
    spec = CohortSpec(members=1, days=7, seed=5, gap_rate=0.25, bad_rate=0, five_minute_hr_share=0)
    hours = {
        sample["start"][:13]  # "2026-11-01T08": the member's local hour
        for body in device_batches(spec, members(spec)[0])
        for sample in json.loads(body)["samples"]
    }
    missing = 1 - len(hours) / (spec.days * 24)
    assert 0.15 < missing < 0.35


def test_apple_export_streams_about_the_records_asked_for(tmp_path: Path) -> None:
    spec = CohortSpec(members=1, bad_rate=0.05, duplicate_rate=0.05)
    member = members(spec)[0]
    path = tmp_path / "big" / "export.xml"
    entry = apple_export(spec, member, path, records=4000)
    assert 4000 <= entry.records < 4000 + 700  # whole days
    assert path.read_text(encoding="utf-8").startswith(APPLE_DTD + '<HealthData locale="en_US">')
    samples, rejected, report = parse(path, entry.format)
    got = (report.read, len(samples), len(rejected), sum(report.unmapped.values()))
    assert got == (entry.records, entry.samples, entry.rejected, entry.unmapped)
    assert max(s.start for s in samples if s.start.year < 2050) < spec.end


def test_members_depend_on_seed_and_index_only() -> None:
    few, more = members(CohortSpec(members=3)), members(CohortSpec(members=5, days=30))
    assert more[:3] == few
    assert len({m.member_id for m in more}) == 5
    assert all(m.member_id.version == 4 for m in more)


def test_spec_refuses_what_it_cannot_honour() -> None:
    with pytest.raises(ValueError, match="aware"):
        CohortSpec(start=dt.datetime(2026, 11, 1))
    with pytest.raises(ValueError, match="bad_rate"):
        CohortSpec(bad_rate=1.5)


def test_command_line_writes_the_cohort_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    assert main(["--members", "2", "--days", "1", "--seed", "3", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("wrote ")
    expected = write_cohort(CohortSpec(members=2, days=1, seed=3), tmp_path / "api")
    assert (out / "manifest.json").read_bytes() == expected.to_json()
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--start", "2026-11-01T00:00:00"])


def test_device_stream_is_fast_enough_for_benchmarks() -> None:
    # A coarse floor, far under the ~300k samples/s measured on a slow core, to catch a
    # per-sample regression (a datetime per sample, say) rather than to benchmark.
    spec = CohortSpec(members=1, days=2, five_minute_hr_share=0)
    started = time.perf_counter()
    count = sum(body.count(b'"code"') for body in device_batches(spec, members(spec)[0]))
    assert count / (time.perf_counter() - started) > 50_000

    small = next(device_batches(spec, members(spec)[0], samples_per_batch=10))
    assert len(json.loads(small)["samples"]) == 10
