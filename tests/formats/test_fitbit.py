"""Fitbit account export: real-shaped fixtures (tests/fixtures/fitbit: the fitbit.com archive
of a member in Europe/Berlin around both DST changes of 2024; fitbit_takeout: Google
Takeout's tree with its CSV twins), the generator's exports, and the bounds."""

from __future__ import annotations

import datetime as dt
import io
import json
import tracemalloc
import uuid
import zipfile
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from backend.db.access import DatabaseAccess
from backend.exceptions import UserError
from backend.governance.members import set_time_zone
from backend.ingest.folder import as_file, zip_folder
from backend.ingest.formats import fitbit
from backend.ingest.formats.local_clock import LocalClock, zone
from backend.ingest.formats.registry import get
from backend.ingest.landing import land
from backend.ingest.model import FormatError, ParseReport, Rejected, Sample
from backend.ingest.time_zones import NoTimeZone
from backend.keys.keystore import KeyStore
from backend.keys.kms import LocalKms
from backend.refine.files import enrol_members
from backend.refine.reconcile import reconcile
from backend.refine.refiner import Outcome, refine_batch
from backend.runtime import Runtime
from backend.synth import fitbit as synth
from backend.synth.members import CohortSpec, member
from tests.cli_run import rejuve

FIXTURES = Path(__file__).parent.parent / "fixtures"
BERLIN = {"tz": "Europe/Berlin"}
UTC = dt.UTC


def zipped(folder: Path, tmp_path: Path) -> Path:
    return zip_folder(folder, tmp_path / f"{folder.name}.zip")


def parse_zip(
    path: Path, options: dict[str, str] | None = None
) -> tuple[list[Sample], list[Rejected], ParseReport]:
    report = ParseReport()
    with path.open("rb") as data:
        out = list(get("fitbit").parse(data, report, name=path.name, options=options or BERLIN))
    return (
        [o for o in out if isinstance(o, Sample)],
        [o for o in out if isinstance(o, Rejected)],
        report,
    )


def parse_bytes(files: dict[str, bytes | str], options: dict[str, str] | None = None) -> tuple[
    list[Sample], list[Rejected], ParseReport
]:  # fmt: skip
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, body in files.items():
            z.writestr(name, body)
    buf.seek(0)
    report = ParseReport()
    out = list(fitbit.parse(buf, report, name="x.zip", options=options or BERLIN))
    return (
        [o for o in out if isinstance(o, Sample)],
        [o for o in out if isinstance(o, Rejected)],
        report,
    )


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


@pytest.fixture(scope="module")
def export(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[Sample], list[Rejected], ParseReport]:
    return parse_zip(zipped(FIXTURES / "fitbit", tmp_path_factory.mktemp("fitbit")))


def test_the_export_reconciles_record_by_record(
    export: tuple[list[Sample], list[Rejected], ParseReport],
) -> None:
    samples, rejected, report = export
    assert report.read == 28
    assert Counter(s.code for s in samples) == {
        "8867-4": 5,
        "55423-8": 2,
        "x-rejuve:distance": 1,
        "x-rejuve:total-energy": 2,
        "40443-4": 1,
        "x-rejuve:hrv-rmssd": 3,
        "59408-5": 2,
        "x-rejuve:sleep-stage": 9,
    }
    assert report.unmapped == {
        "no data: Minute SpO2": 1,
        "estimated_oxygen_variation (file)": 1,
        "altitude (file)": 1,
        "no data: distance": 1,
        "no data: heart_rate": 1,
        "no data: resting_heart_rate": 1,
        "no data: steps": 1,
        "no data: Heart Rate Variability Details": 1,
        "sleep shortData (short wakes inside stages)": 1,
        "sleep log repeated in another file": 1,
    }
    assert sorted((r.reason, r.field) for r in rejected) == [
        ("bad_value", "levels.data[0].level"),
        ("bad_value", "value"),
        ("bad_value", "value.bpm"),
    ]


def test_values_come_as_strings_or_numbers_with_fitbits_units(
    export: tuple[list[Sample], list[Rejected], ParseReport],
) -> None:
    samples, _, _ = export
    by = {(s.code, s.start, s.qualifier): s for s in samples}
    steps = by[("55423-8", at("2024-03-30T23:02:00Z"), None)]
    assert (steps.value, steps.unit) == (104.0, "{steps}")
    distance = by[("x-rejuve:distance", at("2024-03-30T23:01:00Z"), None)]
    assert (distance.value, distance.unit) == (1290.0, "cm")
    calories = by[("x-rejuve:total-energy", at("2024-03-30T23:00:00Z"), None)]
    assert (calories.value, calories.unit) == (1.07, "kcal")
    assert all(s.source == "Fitbit export" for s in samples)


def test_intraday_json_is_utc_and_a_repeated_second_is_left_to_dedup(
    export: tuple[list[Sample], list[Rejected], ParseReport],
) -> None:
    samples, _, _ = export
    hr = [(s.start, s.value) for s in samples if s.code == "8867-4"]
    assert hr == [
        (at("2024-03-30T23:00:02Z"), 61),
        (at("2024-03-30T23:00:07Z"), 62),
        (at("2024-03-30T23:00:22Z"), 64),
        (at("2024-03-30T23:00:22Z"), 64),  # the same reading twice: one duplicate later
        (at("2024-03-31T01:30:05Z"), 58),
    ]
    assert all(s.tz_offset_minutes == 0 for s in samples if s.code == "8867-4")


def test_sleep_across_the_spring_change_is_read_in_the_members_zone(
    export: tuple[list[Sample], list[Rejected], ParseReport],
) -> None:
    samples, _, _ = export
    night = [s for s in samples if s.code == "x-rejuve:sleep-stage" and s.start.month == 3]
    got = [(s.qualifier, s.start.astimezone(UTC), s.end, s.value) for s in night]
    assert [(q, start, end.astimezone(UTC) if end else None, v) for q, start, end, v in got] == [
        ("in_bed", at("2024-03-31T00:40Z"), at("2024-03-31T01:50Z"), 70),
        ("asleep_light", at("2024-03-31T00:40Z"), at("2024-03-31T01:03Z"), 23),
        ("asleep_deep", at("2024-03-31T01:03Z"), at("2024-03-31T01:23Z"), 20),
        ("asleep_rem", at("2024-03-31T01:23Z"), at("2024-03-31T01:43Z"), 20),
        ("awake", at("2024-03-31T01:43Z"), at("2024-03-31T01:50Z"), 7),
    ]
    # Offsets as the member's clock stated them: CET before the change, CEST after.
    assert [s.tz_offset_minutes for s in night] == [60, 60, 120, 120, 120]
    classic = [
        s.qualifier for s in samples if s.code == "x-rejuve:sleep-stage" and s.start.month == 4
    ]
    assert classic == ["in_bed", "asleep", "restless", "awake"]


def test_a_wall_time_in_the_spring_gap_takes_the_offset_before_the_change(
    export: tuple[list[Sample], list[Rejected], ParseReport],
) -> None:
    samples, _, _ = export
    hrv = [
        (s.start.astimezone(UTC), s.value, s.unit)
        for s in samples
        if s.code == "x-rejuve:hrv-rmssd"
    ]
    assert hrv == [
        (at("2024-03-31T00:55Z"), 41.201, "ms"),
        (at("2024-03-31T01:30Z"), 39.87, "ms"),  # 02:30 does not exist: read as 02:30 CET
        (at("2024-03-31T01:35Z"), 44.512, "ms"),
    ]


def test_a_repeated_autumn_hour_follows_the_series(
    export: tuple[list[Sample], list[Rejected], ParseReport],
) -> None:
    samples, _, _ = export
    spo2 = [(s.start.astimezone(UTC), s.value) for s in samples if s.code == "59408-5"]
    # 02:50 then 02:10: the second 02:10 (CET), not the first (CEST), which lies before.
    assert spo2 == [(at("2024-10-27T00:50Z"), 95.7), (at("2024-10-27T01:10Z"), 96.1)]


def test_resting_heart_rate_spans_the_members_local_day(
    export: tuple[list[Sample], list[Rejected], ParseReport],
) -> None:
    samples, _, _ = export
    (rest,) = [s for s in samples if s.code == "40443-4"]
    assert (rest.start.astimezone(UTC), rest.end) == (
        at("2024-03-29T23:00Z"),
        dt.datetime(2024, 3, 31, tzinfo=ZoneInfo("Europe/Berlin")),
    )
    assert rest.value == 58.93


def test_a_rejection_names_the_file_and_the_element(
    export: tuple[list[Sample], list[Rejected], ParseReport],
) -> None:
    _, rejected, _ = export
    where = {r.field: r.locator for r in rejected}
    assert where["value.bpm"].endswith("Physical Activity/heart_rate-2024-03-31.json[3]")
    assert where["value"].endswith("Minute SpO2 - 2024-10-27.csv line 5")
    assert where["levels.data[0].level"].endswith("Sleep/sleep-2024-03-31.json[2]")


def test_the_takeout_csv_tree_supersedes_its_json_twins_and_names_the_device(
    tmp_path: Path,
) -> None:
    samples, rejected, report = parse_zip(zipped(FIXTURES / "fitbit_takeout", tmp_path))
    assert not rejected
    assert report.unmapped["heart_rate json (superseded by its csv twin)"] == 1
    assert report.unmapped["no data: heart_rate"] == 1
    hr = [(s.start, s.value, s.source) for s in samples if s.code == "8867-4"]
    assert hr == [
        (at("2024-03-30T23:00:02Z"), 61, "Fitbit export [Pixel Watch 2]"),
        (at("2024-03-30T23:00:07Z"), 62, "Fitbit export [Pixel Watch 2]"),
    ]
    steps = sorted((s.value, s.source) for s in samples if s.code == "55423-8")
    assert steps == [(17, "Fitbit export [Pixel Watch 2]"), (40, "Fitbit export [MobileTrack]")]
    (rest,) = [s for s in samples if s.code == "40443-4"]
    assert rest.start.astimezone(UTC) == at("2024-03-29T23:00Z")  # a date: the local day
    assert sum(s.code == "x-rejuve:sleep-stage" for s in samples) == 5  # sleep has no twin


def test_without_a_zone_the_export_is_not_read() -> None:
    with pytest.raises(FormatError, match="no time zone"):
        parse_bytes({"heart_rate-2024-01-01.json": "[]"}, options={"other": "x"})
    with pytest.raises(FormatError, match="unknown time zone 'Mars/Olympus'"):
        parse_bytes({"heart_rate-2024-01-01.json": "[]"}, options={"tz": "Mars/Olympus"})


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"notes.txt": "hello"}, "x.zip: no Fitbit data files found"),
        (
            {"a/heart_rate-2024-01-01.json": '{"a": 1}'},
            r"heart_rate-2024-01-01.json: expected a JSON array",
        ),
        (
            {"a/heart_rate-2024-01-01.json": '[{"dateTime": "01/01/24 00:00:00", "value"'},
            r"heart_rate-2024-01-01.json\[0\]: (not readable as JSON|the array ends early)",
        ),
        (
            {"a/steps-2024-01-01.json": '[{"dateTime": "01/01/24 00:00:00", "value": "1"} {}]'},
            r"steps-2024-01-01.json\[1\]: expected ',' or '\]'",
        ),
        (
            {"a/Minute SpO2 - 2024-01-01.csv": "when,value\n"},
            r"Minute SpO2 - 2024-01-01.csv line 1: no 'timestamp' column",
        ),
    ],
)
def test_bad_input_is_one_line_naming_file_and_place(files: dict[str, str], message: str) -> None:
    with pytest.raises(FormatError, match=message) as caught:
        parse_bytes(dict(files))
    assert "\n" not in str(caught.value)


def test_not_a_zip_says_what_to_give() -> None:
    report = ParseReport()
    with pytest.raises(FormatError, match=r"export.json: not a zip archive .*its folder"):
        list(fitbit.parse(io.BytesIO(b"[]"), report, name="export.json", options=BERLIN))


def test_records_before_a_cut_are_kept_then_the_cut_is_named() -> None:
    body = '[{"dateTime": "01/01/24 00:00:02", "value": {"bpm": 70, "confidence": 2}}, {"dateTi'
    report = ParseReport()
    got: list[object] = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("heart_rate-2024-01-01.json", body)
    buf.seek(0)
    with pytest.raises(FormatError, match=r"heart_rate-2024-01-01.json\[1\]"):
        for item in fitbit.parse(buf, report, name="x.zip", options=BERLIN):
            got.append(item)
    assert len(got) == 1


def test_an_element_too_large_is_refused_not_parsed() -> None:
    huge = json.dumps([{"dateTime": "01/01/24 00:00:00", "value": "x" * (1024 * 1024 + 10)}])
    with pytest.raises(FormatError, match=r"steps-2024-01-01.json\[0\]: an element longer than"):
        parse_bytes({"steps-2024-01-01.json": huge})


def test_a_csv_line_too_long_is_refused_before_it_is_held() -> None:
    body = "timestamp,value\n2024-01-01T00:00:00," + "9" * (2 * 1024 * 1024) + "\n"
    with pytest.raises(FormatError, match=r"Minute SpO2 - 2024-01-01.csv near byte .*longer than"):
        parse_bytes({"Minute SpO2 - 2024-01-01.csv": body})


def test_a_zip_bomb_is_refused_before_inflating() -> None:
    info = zipfile.ZipInfo("heart_rate-2024-01-01.json")
    info.file_size, info.compress_size = 2 * 1024**3, 1024 * 1024
    with pytest.raises(FormatError, match="refused as a zip bomb"):
        fitbit._check_size(info, "x.zip/heart_rate-2024-01-01.json")
    info.file_size = fitbit.MAX_MEMBER_BYTES + 1
    with pytest.raises(FormatError, match="no export file is this large"):
        fitbit._check_size(info, "x.zip/heart_rate-2024-01-01.json")


@pytest.mark.parametrize(
    ("value", "outcome"),
    [("72", 72.0), (72, 72.0), (58.9, 58.9), ("0", None), (0, None), ("-1", None), ("", None),
     ("seventy", "bad_value"), ("nan", "bad_value"), ("1e999", "bad_value"), (True, "bad_value")],
)  # fmt: skip
def test_values_strings_sentinels_and_garbage(value: object, outcome: float | str | None) -> None:
    element = {"dateTime": "01/01/24 00:00:00", "value": value}
    samples, rejected, report = parse_bytes({"steps-2024-01-01.json": json.dumps([element])})
    if outcome is None:
        assert (samples, rejected, report.unmapped["no data: steps"]) == ([], [], 1)
    elif isinstance(outcome, str):
        assert [r.reason for r in rejected] == [outcome]
    else:
        assert [s.value for s in samples] == [outcome]


def test_local_clock_rules() -> None:
    clock = LocalClock(zone("America/New_York"))
    # Spring: 02:30 on 2024-03-10 does not exist; read with EST (the offset before).
    assert clock.resolve(dt.datetime(2024, 3, 10, 2, 30)).astimezone(UTC) == at("2024-03-10T07:30Z")
    clock.restart()
    # Autumn: 01:30 on 2024-11-03 happens twice; first the EDT one, then after 01:50 EDT
    # a later 01:10 is the EST one.
    first = clock.resolve(dt.datetime(2024, 11, 3, 1, 30))
    assert first.astimezone(UTC) == at("2024-11-03T05:30Z")
    clock.resolve(dt.datetime(2024, 11, 3, 1, 50))
    again = clock.resolve(dt.datetime(2024, 11, 3, 1, 10))
    assert again.astimezone(UTC) == at("2024-11-03T06:10Z")


@pytest.mark.parametrize("name", ["", "Mars/Olympus", "../etc/passwd", "/etc/localtime", "x" * 80])
def test_unknown_zones_are_refused_in_one_line(name: str) -> None:
    with pytest.raises(UserError):
        zone(name)


def test_a_folder_zips_to_the_same_bytes_every_time(tmp_path: Path) -> None:
    a = zip_folder(FIXTURES / "fitbit", tmp_path / "a.zip").read_bytes()
    b = zip_folder(FIXTURES / "fitbit", tmp_path / "b.zip").read_bytes()
    assert a == b
    with as_file(FIXTURES / "fitbit", "fitbit") as path:
        assert path.name == "fitbit.zip" and path.read_bytes() == a
    assert not path.exists()  # the temporary zip is gone afterwards
    with (
        pytest.raises(UserError, match="is a folder; fhir takes a file"),
        as_file(FIXTURES / "fitbit", "fhir"),
    ):
        pass


def test_generated_export_parses_to_its_tally(tmp_path: Path) -> None:
    spec = CohortSpec(members=1, days=3, seed=5, bad_rate=0.01, duplicate_rate=0.01)
    who = member(spec, 0)
    tally = synth.write_export(spec, who, tmp_path / "e.zip", hr_every_seconds=15)
    samples, rejected, report = parse_zip(tmp_path / "e.zip", {"tz": synth.zone_name(who)})
    got = (report.read, len(samples), len(rejected), sum(report.unmapped.values()))
    assert got == (tally.records, tally.samples, tally.rejected, tally.unmapped)
    assert tally.rejected and tally.duplicates  # the checks above check something
    assert all(spec.start <= s.start < spec.end for s in samples)


def test_memory_stays_flat_on_a_large_export(tmp_path: Path) -> None:
    """Two days at one-second heart rate (~170 k readings, 13 MB of JSON): what the parser
    holds is one block and one element, not the file."""
    spec = CohortSpec(members=1, days=3, seed=2, bad_rate=0.0, duplicate_rate=0.0)
    who = member(spec, 0)
    synth.write_export(spec, who, tmp_path / "big.zip", hr_every_seconds=1)
    report = ParseReport()
    tracemalloc.start()
    try:
        with (tmp_path / "big.zip").open("rb") as data:
            count = sum(1 for _ in fitbit.parse(data, report, options={"tz": synth.zone_name(who)}))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count > 150_000
    assert peak < 8 * 1024 * 1024, peak


# Against the real stack: a scratch database migrated to head (landing, refiner, ledger).


@pytest.fixture(scope="module")
def fixture_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zipped(FIXTURES / "fitbit", tmp_path_factory.mktemp("fitbit-e2e"))


def land_and_refine(
    db: DatabaseAccess, keys: KeyStore, who: uuid.UUID, path: Path, options: dict[str, str] | None
) -> Outcome:
    with db.connect("ingest") as conn, path.open("rb") as data:
        receipt = land(
            conn,
            keys,
            source="test:fitbit",
            fmt="fitbit",
            member_id=who,
            region="local",
            data=data,
            file_name=path.name,
            parse_options=options,
        )
    with db.connect("refiner") as conn:
        outcome = refine_batch(conn, keys, receipt.batch_id)
    assert outcome is not None
    return outcome


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys", LocalKms.from_file(tmp_path / "kms" / "master.key"))


def enrolled(db: DatabaseAccess) -> uuid.UUID:
    who = uuid.uuid4()
    enrol_members(db, [who], "local")
    return who


def test_the_export_goes_in_reconciled_and_again_is_all_duplicates(
    migrated_db: DatabaseAccess, keys: KeyStore, fixture_zip: Path
) -> None:
    who = enrolled(migrated_db)
    first = land_and_refine(migrated_db, keys, who, fixture_zip, BERLIN)
    # 25 samples + 3 rejections; the heart-rate reading given twice is stored once.
    assert (first.parsed, first.processed, first.quarantined, first.duplicate) == (28, 24, 3, 1)
    assert first.balanced and first.records_read == 28
    assert first.unmapped["sleep log repeated in another file"] == 1
    again = land_and_refine(migrated_db, keys, who, fixture_zip, BERLIN)
    assert (again.parsed, again.processed, again.quarantined, again.duplicate) == (28, 0, 0, 28)
    with migrated_db.connect("owner") as conn:
        rows = conn.execute(
            "select code, observed_at, unit, value, qualifier from processed.observations"
            " where member_id = %s order by observed_at, code, qualifier",
            (who,),
        ).fetchall()
        lines = reconcile(conn).batches
    assert len(rows) == 24
    ours = [ln for ln in lines if ln.batch_id in (first.batch_id, again.batch_id)]
    assert len(ours) == 2 and all(ln.ok for ln in ours), [ln.problems for ln in ours]
    units = {code: unit for code, _, unit, _, _ in rows}
    assert units["x-rejuve:distance"] == "km" and units["x-rejuve:total-energy"] == "kcal"
    light = [r for r in rows if r[4] == "asleep_light"]
    assert [(r[1], r[3]) for r in light] == [(at("2024-03-31T00:40Z"), 23.0)]


def test_landing_refuses_an_export_without_a_zone_then_takes_the_members(
    migrated_db: DatabaseAccess, keys: KeyStore, fixture_zip: Path
) -> None:
    who = enrolled(migrated_db)
    with pytest.raises(NoTimeZone, match="pass --tz"):
        land_and_refine(migrated_db, keys, who, fixture_zip, None)
    with migrated_db.connect("owner") as conn:
        landed = conn.execute("select count(*) from raw.batches where member_id = %s", (who,))
        assert landed.fetchone() == (0,)  # refused at the door: nothing landed
    with migrated_db.connect("backend") as conn:
        with pytest.raises(UserError, match="unknown time zone"):
            set_time_zone(conn, who, "Europe/Atlantis")
        assert set_time_zone(conn, who, "Europe/Berlin")
    outcome = land_and_refine(migrated_db, keys, who, fixture_zip, None)
    assert outcome.processed == 24
    with migrated_db.connect("owner") as conn:
        kept = conn.execute(
            "select parse_options from raw.batches where batch_id = %s", (outcome.batch_id,)
        ).fetchone()
    assert kept == ({"tz": "Europe/Berlin"},)  # the zone used stays with the batch


def test_the_cli_takes_the_unpacked_folder_and_asks_for_a_zone(ctx: Runtime) -> None:
    who = str(uuid.uuid4())
    folder = str(FIXTURES / "fitbit")
    refused = rejuve("ingest", folder, "--format", "fitbit", "--member", who, "--enrol")
    assert refused.returncode == 2, refused.stdout
    assert "--tz" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    first = rejuve("ingest", folder, "--format", "fitbit", "--member", who, "--tz", "Europe/Berlin")
    assert first.returncode == 1, first.stderr  # three records quarantined, on purpose
    assert "fitbit.zip:" in first.stdout and "landed as batch" in first.stdout
    assert "sleep log repeated in another file" in first.stdout
    zone_set = rejuve("members", "zone", who, "Europe/Berlin")
    assert zone_set.returncode == 0, zone_set.stderr
    again = rejuve("ingest", folder, "--format", "fitbit", "--member", who)
    assert again.returncode == 0, again.stderr
    assert "0 processed, 28 duplicate" in again.stdout
    wrong = rejuve("members", "zone", who, "Mars/Olympus")
    assert wrong.returncode == 2 and "unknown time zone 'Mars/Olympus'" in wrong.stderr
    not_local = rejuve("ingest", folder, "--format", "fhir", "--member", who, "--tz", "UTC")
    assert not_local.returncode == 2
