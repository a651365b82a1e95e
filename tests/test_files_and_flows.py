"""Files end to end: every format through land -> refine -> reconcile; the drop folder;
the Prefect deployment running on the real Prefect server."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

from backend.db.access import DatabaseAccess
from backend.exceptions import UserError
from backend.keys.keystore import KeyStore
from backend.keys.kms import LocalKms
from backend.refine import dropbox
from backend.refine.files import enrol_members, ingest_file
from backend.stack.context import StackContext
from tests.prefect_runs import run_deployment

FIXTURES = Path(__file__).parent / "fixtures"
VITALS_SUBJECT = uuid.UUID("6f1c2e4a-58e0-4b7e-9c1d-2a5b8f0e7d31")
FILES = [
    ("apple-health", "apple_health/export.xml"),
    ("apple-health", "apple_health/export_de_DE.xml"),
    ("fhir", "fhir/vitals-transaction.json"),
    ("fhir", "fhir/labs-searchset.json"),
    ("fhir", "fhir/mixed-collection.json"),
    ("fhir", "fhir/observation-single.json"),
    ("fhir", "fhir/synthea-bundle.json"),
    ("omh", "omh/mixed-points.json"),
    ("omh", "omh/points.ndjson"),
    ("omh", "omh/single-point.json"),
    ("csv-lab", "csv_lab/labs.csv"),
]


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys", LocalKms.from_file(tmp_path / "kms" / "master.key"))


@pytest.mark.parametrize(("fmt", "name"), FILES, ids=[n for _, n in FILES])
def test_every_format_reconciles(
    migrated_db: DatabaseAccess, keys: KeyStore, fmt: str, name: str
) -> None:
    member = VITALS_SUBJECT if "vitals" in name else uuid.uuid4()
    result = ingest_file(
        migrated_db,
        keys,
        path=FIXTURES / name,
        fmt=fmt,
        member_id=member,
        region="local",
        enrol=True,
    )
    line = result.line
    assert line.error is None
    assert line.ok, line.problems
    assert line.parsed == line.processed + line.quarantined + line.duplicate
    assert line.parsed > 0
    # and a second upload of the same file adds nothing: every measurement is a duplicate
    again = ingest_file(
        migrated_db,
        keys,
        path=FIXTURES / name,
        fmt=fmt,
        member_id=member,
        region="local",
        enrol=True,
    ).line
    # its bad records too: one open quarantine entry per record, the copies duplicates
    assert (again.processed, again.quarantined) == (0, 0)
    assert again.duplicate == line.processed + line.quarantined


def test_a_bundle_whose_patient_is_another_member_is_refused(
    migrated_db: DatabaseAccess, keys: KeyStore
) -> None:
    """The bundle's Patient id is an enrolled member's id: refused at the door, one line,
    nothing landed (issue 11: no longer quarantined record by record)."""
    enrol_members(migrated_db, [VITALS_SUBJECT], "local")
    someone_else = uuid.uuid4()
    with pytest.raises(UserError, match="another member") as caught:
        ingest_file(
            migrated_db,
            keys,
            path=FIXTURES / "fhir/vitals-transaction.json",
            fmt="fhir",
            member_id=someone_else,
            region="local",
            enrol=True,
        )
    assert "\n" not in str(caught.value)
    with migrated_db.connect("refiner") as conn:
        landed = conn.execute(
            "select count(*) from raw.batches where member_id = %s", (someone_else,)
        ).fetchone()
    assert landed == (0,)


def test_an_observation_naming_another_member_is_quarantined(
    migrated_db: DatabaseAccess, keys: KeyStore, tmp_path: Path
) -> None:
    """A record naming another platform member (not the bundle's own Patient) still
    cannot slip into the uploader's data."""
    someone_else = uuid.uuid4()
    single = json.loads((FIXTURES / "fhir/observation-single.json").read_text())
    single["subject"] = {"reference": f"Patient/{uuid.uuid4()}"}
    path = tmp_path / "other.json"
    path.write_text(json.dumps(single))
    line = ingest_file(
        migrated_db,
        keys,
        path=path,
        fmt="fhir",
        member_id=someone_else,
        region="local",
        enrol=True,
    ).line
    assert line.processed == 0 and line.quarantined == line.parsed > 0
    with migrated_db.connect("refiner") as conn:
        reasons = conn.execute(
            "select distinct reason, field from processed.quarantine where batch_id = %s",
            (line.batch_id,),
        ).fetchall()
    assert reasons == [("member_mismatch", "subject")]


def test_csv_with_a_mapping(migrated_db: DatabaseAccess, keys: KeyStore) -> None:
    import tomllib

    options = tomllib.loads((FIXTURES / "csv_lab/mapping-eu.toml").read_text())
    line = ingest_file(
        migrated_db,
        keys,
        path=FIXTURES / "csv_lab/labs-eu.csv",
        fmt="csv-lab",
        member_id=uuid.uuid4(),
        region="local",
        parse_options=options,
        enrol=True,
    ).line
    assert line.error is None and line.ok and line.processed > 0


def test_drop_folder(migrated_db: DatabaseAccess, keys: KeyStore, tmp_path: Path) -> None:
    root = tmp_path / "drop"
    dropbox.ensure(root)
    member = uuid.uuid4()
    enrol_members(migrated_db, [member], "local")
    good = root / "omh" / str(member) / "points.json"
    bad = root / "fhir" / str(member) / "broken.json"
    fresh = root / "csv-lab" / str(member) / "still-copying.csv"
    stray = root / "omh" / "not-a-member" / "x.json"
    for path in (good, bad, fresh, stray):
        path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "omh/mixed-points.json", good)
    bad.write_text('{"resourceType": "Bundle", "type": "collection", "entry": [')
    fresh.write_text("member_id,loinc,value,unit,effective_at\n")
    stray.write_text("{}")
    old = time.time() - 60
    for path in (good, bad, stray):
        os.utime(path, (old, old))

    items = dropbox.scan(root)
    assert sorted(i.path.name for i in items) == ["broken.json", "points.json"]
    notes = {
        Path(str(n["file"])).name: n
        for n in (dropbox.process(migrated_db, keys, "local", root, i) for i in items)
    }

    assert notes["points.json"]["reconciled"] is True
    assert notes["points.json"]["processed"] == 14  # mixed-points.json: 14 samples, 4 refused
    assert (root / "done" / "omh" / str(member) / "points.json").exists()
    assert "broken.json" in str(notes["broken.json"]["error"])
    assert "line 1" in str(notes["broken.json"]["error"])
    assert (root / "failed" / "fhir" / str(member) / "broken.json").exists()
    assert (root / "failed" / "fhir" / str(member) / "broken.json.json").exists()
    assert fresh.exists() and stray.exists()  # left alone: still being written / misplaced


def _run_ingest_file(ctx: StackContext, **parameters: object) -> str:
    """Run the `ingest-file` deployment on the stack's Prefect server with `parameters`;
    returns the run's final state."""
    return run_deployment(ctx, "ingest-file", dict(parameters))[1]


def _flow_batch(ctx: StackContext, member: uuid.UUID) -> tuple[int, int] | None:
    """(processed, quarantined) of the member's batch landed by the flow, if any."""
    with ctx.db.connect("refiner") as conn:
        row = conn.execute(
            "select l.processed, l.quarantined from raw.batches b"
            " join processed.batch_ledger l using (batch_id)"
            " where b.member_id = %s and b.source = 'flow:omh'",
            (member,),
        ).fetchone()
    return None if row is None else (row[0], row[1])


def test_ingest_file_deployment_runs_on_prefect(ctx: StackContext) -> None:
    member = uuid.uuid4()
    enrol_members(ctx.db, [member], "local")
    path = str(FIXTURES / "omh/mixed-points.json")
    assert _run_ingest_file(ctx, path=path, fmt="omh", member_id=str(member)) == "COMPLETED"
    assert _flow_batch(ctx, member) == (14, 4)


def test_ingest_file_deployment_enrols_only_when_asked(ctx: StackContext) -> None:
    """`enrol` as `rejuve ingest --enrol`: a member that is not enrolled fails the run
    (nothing lands) unless the run is asked to enrol it first."""
    path = str(FIXTURES / "omh/mixed-points.json")
    stranger, newcomer = uuid.uuid4(), uuid.uuid4()
    assert _run_ingest_file(ctx, path=path, fmt="omh", member_id=str(stranger)) == "FAILED"
    assert _flow_batch(ctx, stranger) is None
    state = _run_ingest_file(ctx, path=path, fmt="omh", member_id=str(newcomer), enrol=True)
    assert state == "COMPLETED"
    assert _flow_batch(ctx, newcomer) == (14, 4)


def test_a_lab_file_with_many_members_lands_one_batch_per_member(
    migrated_db: DatabaseAccess, keys: KeyStore, tmp_path: Path
) -> None:
    from backend.exceptions import UserError
    from backend.refine.files import ingest_multi_member_csv

    a, b = uuid.uuid4(), uuid.uuid4()
    path = tmp_path / "labs.csv"
    path.write_text(
        "member_id,loinc,value,unit,effective_at\n"
        f"{a},4548-4,6.1,%,2026-03-02T08:10:00+01:00\n"
        f"{b},2093-3,187,mg/dL,2026-03-02T08:10:00+01:00\n"
        "\n"
        f"{a},2093-3,9999,mg/dL,2026-03-02T08:10:00+01:00\n"
    )
    results = ingest_multi_member_csv(migrated_db, keys, path=path, region="local", enrol=True)
    by_member = {}
    with migrated_db.connect("refiner") as conn:
        for r in results:
            member = conn.execute(
                "select member_id from raw.batches where batch_id = %s", (r.receipt.batch_id,)
            ).fetchone()
            assert member is not None
            by_member[member[0]] = (r.line.parsed, r.line.processed, r.line.quarantined)
    assert by_member == {a: (2, 1, 1), b: (1, 1, 0)}
    # the same file again: each member's part is recognised, nothing new lands
    again = ingest_multi_member_csv(migrated_db, keys, path=path, region="local", enrol=True)
    assert all(r.receipt.replayed for r in again)

    path.write_text(
        "member_id,loinc,value,unit,effective_at\n"
        f"{a},4548-4,6.1,%,2026-03-02T08:10:00+01:00\n"
        "M-17,4548-4,6.1,%,2026-03-02T08:10:00+01:00\n"
    )
    with pytest.raises(UserError, match=r"labs\.csv line 3: member 'M-17' is not a platform"):
        ingest_multi_member_csv(migrated_db, keys, path=path, region="local", enrol=True)


def test_zipped_apple_export_is_read_from_the_encrypted_parts(
    migrated_db: DatabaseAccess, keys: KeyStore, tmp_path: Path
) -> None:
    """The zip is landed as received; the refiner seeks in it through the decrypting reader.
    A German phone names the document Exportieren.xml; the clinical document is skipped."""
    import zipfile

    from backend.ingest import landing

    xml = (FIXTURES / "apple_health/export.xml").read_bytes()
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("apple_health_export/Exportieren.xml", xml)
        zf.writestr("apple_health_export/export_cda.xml", b"<ClinicalDocument/>")
        # bulk beyond one 4 MiB part, so reading crosses part boundaries
        zf.writestr("apple_health_export/workout-routes/route.gpx", os.urandom(5 * 2**20))
    assert path.stat().st_size > landing.PART_SIZE
    member = uuid.uuid4()
    zipped = ingest_file(
        migrated_db,
        keys,
        path=path,
        fmt="apple-health",
        member_id=member,
        region="local",
        enrol=True,
    )
    plain = ingest_file(
        migrated_db,
        keys,
        path=FIXTURES / "apple_health/export.xml",
        fmt="apple-health",
        member_id=member,
        region="local",
    )
    assert zipped.receipt.records == 2
    assert zipped.line.error is None and zipped.line.ok
    assert zipped.line.parsed == plain.line.parsed > 0
    # the same data, seen again: its measurements and its open quarantine entries
    assert plain.line.duplicate == zipped.line.processed + zipped.line.quarantined
