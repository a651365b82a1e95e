"""Member identifiers on a scratch database: linking (unique per system), and the door
rule that resolves a FHIR bundle's Patient to the enrolled member before anything lands,
end to end through `ingest_file` with a Synthea-shaped bundle."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from backend.db.access import DatabaseAccess
from backend.exceptions import Conflict, NotFound, UserError
from backend.identity.identifiers import Identifier, link, of_member, owners, unlink
from backend.keys.keystore import KeyStore
from backend.keys.kms import LocalKms
from backend.refine.files import FileResult, enrol_members, ingest_file

FIXTURES = Path(__file__).parent.parent / "fixtures" / "fhir"
SYNTHEA = FIXTURES / "synthea-bundle.json"
SYNTHEA_PATIENT = "5cbc121b-cd71-4428-b8b7-31e53eba8184"
MRN = Identifier("http://hospital.smarthealthit.org", SYNTHEA_PATIENT)


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys", LocalKms.from_file(tmp_path / "kms" / "master.key"))


def member(db: DatabaseAccess) -> uuid.UUID:
    m = uuid.uuid4()
    enrol_members(db, [m], "local")
    return m


def bundle_for(tmp_path: Path, patient_id: str, identifiers: list[dict[str, str]]) -> Path:
    """The Synthea bundle with another Patient (id, identifiers) and its references."""
    text = SYNTHEA.read_text().replace(SYNTHEA_PATIENT, patient_id)
    document = json.loads(text)
    document["entry"][0]["resource"]["identifier"] = identifiers
    path = tmp_path / f"{patient_id}.json"
    path.write_text(json.dumps(document))
    return path


def ingest(db: DatabaseAccess, keys: KeyStore, path: Path, who: uuid.UUID | None) -> FileResult:
    return ingest_file(db, keys, path=path, fmt="fhir", member_id=who, region="local")


def batches(db: DatabaseAccess) -> int:
    with db.connect("refiner") as conn:
        row = conn.execute("select count(*) from raw.batches").fetchone()
    return int(row[0]) if row else 0


def test_link_is_unique_per_system(migrated_db: DatabaseAccess) -> None:
    ann, bob = member(migrated_db), member(migrated_db)
    mrn = Identifier("https://clinic.example/mrn", "A-1")
    with migrated_db.connect("backend") as conn:
        assert link(conn, ann, [mrn, Identifier("https://lab.example/pid", "77")]) == 2
        assert link(conn, ann, [mrn]) == 0  # already hers
        with pytest.raises(Conflict, match=re.escape("https://clinic.example/mrn")) as caught:
            link(conn, bob, [mrn])
        assert "A-1" not in str(caught.value)  # the value is personal data: never echoed
        # The same value in another system is another identifier.
        assert link(conn, bob, [Identifier("https://other.example/mrn", "A-1")]) == 1
        with pytest.raises(NotFound):
            link(conn, uuid.uuid4(), [Identifier("https://clinic.example/mrn", "B-2")])
        assert owners(conn, [mrn, Identifier("https://clinic.example/mrn", "Z")]) == {mrn: ann}
        assert [str(x.identifier) for x in of_member(conn, ann)] == [
            "https://clinic.example/mrn|A-1",
            "https://lab.example/pid|77",
        ]
        assert unlink(conn, ann, [mrn]) == 1
        assert link(conn, bob, [mrn]) == 1


def test_identifier_parse() -> None:
    assert Identifier.parse("urn:oid:2.16.840.1|MRN|7") == Identifier("urn:oid:2.16.840.1", "MRN|7")
    for bad in ("no-bar", "|value", "system|", ""):
        with pytest.raises(UserError):
            Identifier.parse(bad)


def test_member_option_links_the_patient_and_later_bundles_resolve(
    migrated_db: DatabaseAccess, keys: KeyStore
) -> None:
    ann = member(migrated_db)
    first = ingest(migrated_db, keys, SYNTHEA, ann).line
    # Issue 11: no member_mismatch any more; every observation is ann's.
    assert first.ok, first.problems
    assert first.quarantined == 0 and first.processed == first.parsed == 7
    with migrated_db.connect("backend") as conn:
        linked = {(x.identifier, x.how) for x in of_member(conn, ann)}
    assert (MRN, "ingest") in linked and len(linked) == 3  # synthea, MR and SSN

    # Without --member the bundle resolves to ann through its identifiers: all duplicates.
    again = ingest(migrated_db, keys, SYNTHEA, None)
    assert again.receipt.batch_id != first.batch_id
    assert (again.line.processed, again.line.duplicate) == (0, 7)
    with migrated_db.connect("refiner") as conn:
        owner = conn.execute(
            "select member_id from raw.batches where batch_id = %s", (again.receipt.batch_id,)
        ).fetchone()
    assert owner == (ann,)

    # --member naming someone else: one line, nothing lands.
    bob = member(migrated_db)
    before = batches(migrated_db)
    with pytest.raises(UserError, match="another member") as caught:
        ingest(migrated_db, keys, SYNTHEA, bob)
    assert batches(migrated_db) == before
    assert SYNTHEA_PATIENT not in str(caught.value) and "999-" not in str(caught.value)


def test_a_patient_nobody_is_linked_to_is_refused_without_member(
    migrated_db: DatabaseAccess, keys: KeyStore, tmp_path: Path
) -> None:
    stranger = bundle_for(
        tmp_path,
        str(uuid.uuid4()),
        [{"system": "https://hospital.example/mrn", "value": "UNKNOWN-1"}],
    )
    before = batches(migrated_db)
    with pytest.raises(UserError, match="not linked to any member") as caught:
        ingest(migrated_db, keys, stranger, None)
    message = str(caught.value)
    assert "https://hospital.example/mrn" in message and "UNKNOWN-1" not in message
    assert batches(migrated_db) == before  # refused at the door: nothing landed


def test_a_bundle_with_two_patients_is_refused(
    migrated_db: DatabaseAccess, keys: KeyStore, tmp_path: Path
) -> None:
    document = json.loads(SYNTHEA.read_text())
    second = json.loads(json.dumps(document["entry"][0]))
    second["fullUrl"] = f"urn:uuid:{uuid.uuid4()}"
    second["resource"]["id"] = second["fullUrl"].removeprefix("urn:uuid:")
    second["resource"]["identifier"] = []
    document["entry"].append(second)
    path = tmp_path / "two.json"
    path.write_text(json.dumps(document))
    with pytest.raises(UserError, match="2 Patients"):
        ingest(migrated_db, keys, path, member(migrated_db))


def test_identifiers_held_by_two_members_are_refused(
    migrated_db: DatabaseAccess, keys: KeyStore, tmp_path: Path
) -> None:
    ann, bob = member(migrated_db), member(migrated_db)
    with migrated_db.connect("backend") as conn:
        link(conn, ann, [Identifier("https://a.example", "1")])
        link(conn, bob, [Identifier("https://b.example", "2")])
    path = bundle_for(
        tmp_path,
        str(uuid.uuid4()),
        [
            {"system": "https://a.example", "value": "1"},
            {"system": "https://b.example", "value": "2"},
        ],
    )
    with pytest.raises(UserError, match="more than one member"):
        ingest(migrated_db, keys, path, ann)
