"""Garmin, FIT and Health Connect files end to end against the real stack: landed
encrypted in raw, refined, reconciled (parsed = processed + quarantined + duplicate,
unmapped counted by type), and a second upload all duplicates; a damaged FIT file
reported unreadable in one line with nothing stored."""

from __future__ import annotations

import os
import uuid
import zipfile
from pathlib import Path

import pytest

from backend.db.access import DatabaseAccess
from backend.ingest import landing
from backend.ingest.folder import as_file
from backend.keys.keystore import KeyStore
from backend.keys.kms import LocalKms
from backend.refine.files import FileResult, ingest_file
from backend.refine.reconcile import BatchLine
from backend.synth.cohort import CohortSpec, members
from backend.synth.fit_files import fit_files
from backend.synth.garmin import garmin_export
from backend.synth.health_connect import health_connect_export
from tests.formats import test_fit, test_garmin, test_health_connect

SPEC = CohortSpec(members=1, days=3, seed=5, bad_rate=0.05, duplicate_rate=0.05)


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys", LocalKms.from_file(tmp_path / "kms" / "master.key"))


def ingest(
    db: DatabaseAccess, keys: KeyStore, path: Path, fmt: str, member: uuid.UUID
) -> FileResult:
    with as_file(path, fmt) as landable:
        return ingest_file(
            db, keys, path=landable, fmt=fmt, member_id=member, region="local", enrol=True
        )


def reconciles_then_repeats(
    db: DatabaseAccess, keys: KeyStore, path: Path, fmt: str
) -> tuple[BatchLine, BatchLine]:
    member = uuid.uuid4()
    line = ingest(db, keys, path, fmt, member).line
    assert line.error is None and line.status == "refined"
    assert line.ok, line.problems
    assert line.parsed == line.processed + line.quarantined + line.duplicate
    assert line.processed > 0
    again = ingest(db, keys, path, fmt, member).line
    assert again.ok, again.problems
    assert (again.processed, again.quarantined) == (0, 0)
    # every record again: stored, quarantined (its open entry) or already a duplicate
    assert again.duplicate == line.parsed
    assert again.unmapped == line.unmapped
    return line, again


def test_garmin_export_zip_and_its_folder(
    migrated_db: DatabaseAccess, keys: KeyStore, tmp_path: Path
) -> None:
    path = tmp_path / "garmin-export.zip"
    path.write_bytes(test_garmin.export_zip())
    line, _ = reconciles_then_repeats(migrated_db, keys, path, "garmin")
    # 26 samples and the activity whose two clocks disagree, quarantined as rejected
    assert (line.parsed, line.processed, line.quarantined) == (27, 26, 1)
    assert line.reasons == {"bad_timestamp": 1}
    assert line.unmapped["garmin stress: no data (negative sentinel)"] == 1
    # the unpacked folder is landed as the same deterministic zip each time
    line, _ = reconciles_then_repeats(migrated_db, keys, test_garmin.FIXTURES, "garmin")
    assert line.parsed == 27


def test_fit_file(migrated_db: DatabaseAccess, keys: KeyStore, tmp_path: Path) -> None:
    path = tmp_path / "run.fit"
    path.write_bytes(test_fit.activity())
    line, _ = reconciles_then_repeats(migrated_db, keys, path, "fit")
    assert (line.parsed, line.processed, line.quarantined) == (11, 10, 1)


def test_a_damaged_fit_file_is_unreadable_and_stores_nothing(
    migrated_db: DatabaseAccess, keys: KeyStore, tmp_path: Path
) -> None:
    data = test_fit.activity()
    path = tmp_path / "run.fit"
    path.write_bytes(data[: len(data) - 40])
    line = ingest(migrated_db, keys, path, "fit", uuid.uuid4()).line
    assert line.status == "unreadable"
    assert line.error is not None and "\n" not in line.error
    assert line.error.startswith("run.fit byte ") and "truncated" in line.error
    assert (line.processed, line.quarantined, line.observation_rows) == (0, 0, 0)


def test_health_connect_zip_across_parts(
    migrated_db: DatabaseAccess, keys: KeyStore, tmp_path: Path
) -> None:
    """The database sits after 5 MiB of other bytes in the zip: extracting it reads
    across the encrypted parts of the raw zone."""
    path = tmp_path / "Health Connect.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("icons.bin", os.urandom(5 * 2**20))
        archive.writestr("health_connect_export.db", test_health_connect.database())
    assert path.stat().st_size > landing.PART_SIZE
    line, _ = reconciles_then_repeats(migrated_db, keys, path, "health-connect")
    # 20 samples (Google Fit's copy of the watch's steps is a duplicate) and two rows
    # rejected (an interval that ends before it starts, an unknown sleep stage)
    assert (line.parsed, line.processed, line.quarantined, line.duplicate) == (22, 19, 2, 1)
    assert line.unmapped == {"health connect speed_record_table": 2}


@pytest.mark.parametrize("fmt", ["garmin", "fit", "health-connect"])
def test_generated_files(
    migrated_db: DatabaseAccess, keys: KeyStore, tmp_path: Path, fmt: str
) -> None:
    [member] = members(SPEC)
    if fmt == "garmin":
        files = [("garmin-export.zip", garmin_export(SPEC, member)[0])]
    elif fmt == "health-connect":
        files = [("Health Connect.zip", health_connect_export(SPEC, member)[0])]
    else:
        files = [(f.name, f.data) for f in fit_files(SPEC, member)][:1]
    assert files  # seed 5 gives the member a workout in three days
    for name, data in files:
        (tmp_path / name).write_bytes(data)
        reconciles_then_repeats(migrated_db, keys, tmp_path / name, fmt)


def test_a_garmin_exports_fit_uploads_and_the_same_file_alone(
    migrated_db: DatabaseAccess, keys: KeyStore, tmp_path: Path
) -> None:
    """The FIT files nested in a Garmin export go in with it (a damaged one counted and
    skipped); the same FIT file ingested alone afterwards is all duplicates."""
    run = test_fit.activity()
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(nested, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("jane@example.com_1.fit", run)
        archive.writestr("jane@example.com_2.fit", run[:100])
    export = tmp_path / "garmin-export.zip"
    uploads = "DI_CONNECT/DI-Connect-Uploaded-Files/UploadedFiles_0-_Part1.zip"
    export.write_bytes(test_garmin.export_zip(extra={uploads: nested.read_bytes()}))
    member = uuid.uuid4()
    line = ingest(migrated_db, keys, export, "garmin", member).line
    assert line.ok and line.status == "refined", line.problems
    assert (line.parsed, line.processed, line.quarantined) == (27 + 11, 26 + 10, 2)
    assert any(k.startswith("garmin uploaded FIT file skipped: ") for k in line.unmapped)
    alone = tmp_path / "run.fit"
    alone.write_bytes(run)
    again = ingest(migrated_db, keys, alone, "fit", member).line
    assert (again.parsed, again.processed, again.quarantined, again.duplicate) == (11, 0, 0, 11)
