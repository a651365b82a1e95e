"""Results that are not plain catalog numbers, through the real refiner on a scratch
database: coded and text results stored with their concept, LOINC codes outside the
catalog stored and flagged, a folded code recorded on its row, date-only times flagged;
the batch reconciles, a re-upload is all duplicates, the rollups ignore non-numeric rows,
quarantine release keeps a coded result coded, and the coach's labs list a SARS-CoV-2 PCR
"Detected"."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.analytics import rollups
from backend.coaching import labs
from backend.db.access import DatabaseAccess
from backend.governance import consent
from backend.keys.keystore import KeyStore
from backend.keys.kms import LocalKms
from backend.query.viewer import Viewer
from backend.refine import quarantine
from backend.refine.files import FileResult, enrol_members, ingest_file

FIXTURES = Path(__file__).parent.parent / "fixtures"
SNOMED = "http://snomed.info/sct"


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys", LocalKms.from_file(tmp_path / "kms" / "master.key"))


@pytest.fixture
def ann(migrated_db: DatabaseAccess) -> uuid.UUID:
    m = uuid.uuid4()
    enrol_members(migrated_db, [m], "local")
    return m


@pytest.fixture
def synthea(tmp_path: Path) -> Path:
    """The Synthea-shaped bundle with a Patient of its own (id and identifiers): the
    identifiers link to the first member who ingests it, one member per test here."""
    patient = str(uuid.uuid4())
    path = tmp_path / "synthea.json"
    text = (FIXTURES / "fhir/synthea-bundle.json").read_text()
    path.write_text(
        text.replace("5cbc121b-cd71-4428-b8b7-31e53eba8184", patient).replace(
            "999-71-4523", f"999-{patient[:6]}"
        )
    )
    return path


def ingest(db: DatabaseAccess, keys: KeyStore, path: Path, who: uuid.UUID, fmt: str) -> FileResult:
    return ingest_file(db, keys, path=path, fmt=fmt, member_id=who, region="local")


def rows(db: DatabaseAccess, member: uuid.UUID) -> dict[str, tuple[object, ...]]:
    with db.connect("refiner") as conn:
        found = conn.execute(
            "select code, value, unit, value_code, value_system, value_text, value_boolean,"
            " quality_flags, observed_at from processed.observations where member_id = %s",
            (member,),
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in found}


def test_synthea_bundle_lands_coded_uncatalogued_folded_and_date_only_rows(
    migrated_db: DatabaseAccess, keys: KeyStore, ann: uuid.UUID, synthea: Path
) -> None:
    result = ingest(migrated_db, keys, synthea, ann, "fhir")
    line = result.line
    assert line.ok, line.problems
    assert (line.parsed, line.processed, line.quarantined, line.duplicate) == (7, 7, 0, 0)
    assert line.unmapped == {"Patient": 1, "Encounter": 1}

    got = rows(migrated_db, ann)
    assert got["94531-1"][:6] == (
        None,
        "",
        "260373001",
        SNOMED,
        "Detected (qualifier value)",
        None,
    )
    assert got["72166-2"][2:7] == (
        "266919005",
        SNOMED,
        "Never smoked tobacco (finding)",
        None,
        ["uncatalogued"],
    )
    assert got["1963-8"][:2] == (25.1, "mmol/L") and got["1963-8"][6] == ["uncatalogued"]
    # 2708-6 folded onto the catalog's SpO2 code, the fold recorded on the row.
    assert "2708-6" not in got and got["59408-5"][6] == ["code_from:2708-6"]
    # Date-only: the start of that day in UTC, flagged.
    assert got["2339-0"][6] == ["date_only"]
    assert got["2339-0"][7] == dt.datetime(2020, 3, 5, tzinfo=dt.UTC)

    again = ingest(migrated_db, keys, synthea, ann, "fhir").line
    assert again.ok and (again.processed, again.duplicate) == (0, 7)

    # Rollups are numeric: the coded rows queued no key, and a rebuild leaves them out.
    with migrated_db.connect("refiner") as conn:
        queued = conn.execute(
            "select code from analytics.rollup_dirty where member_id = %s", (ann,)
        ).fetchall()
        assert {c for (c,) in queued} >= {"8867-4", "1963-8"}
        assert not {c for (c,) in queued} & {"94531-1", "72166-2"}
        conn.commit()
        rollups.refresh_all(conn)
        rolled = conn.execute(
            "select code, n from analytics.rollup_hourly where member_id = %s", (ann,)
        ).fetchall()
        conn.commit()
    assert {c for c, _ in rolled} >= {"8867-4", "1963-8"}
    assert not {c for c, _ in rolled} & {"94531-1", "72166-2"}


def test_csv_text_results_and_date_only_rows(
    migrated_db: DatabaseAccess, keys: KeyStore, ann: uuid.UUID, tmp_path: Path
) -> None:
    path = tmp_path / "pcr.csv"
    path.write_text(
        "member_id,loinc,value,unit,effective_at\n"
        f"{ann},94500-6,Detected,,2024-03-02\n"
        f"{ann},3016-3,2.1,mIU/L,2024-03-02T08:00:00+01:00\n"
        f"{ann},718-7,positive,,2024-03-02T08:00:00+01:00\n"
    )
    line = ingest(migrated_db, keys, path, ann, "csv-lab").line
    assert line.ok, line.problems
    assert (line.parsed, line.processed, line.quarantined) == (3, 2, 1)
    got = rows(migrated_db, ann)
    assert got["94500-6"][:7] == (None, "", None, None, "Detected", None, ["date_only"])
    assert got["3016-3"][:2] == (2.1, "m[IU]/L") and got["3016-3"][6] == ["uncatalogued"]
    # A word under a numeric code is for a steward; released as a number, it goes in.
    with migrated_db.connect("refiner") as conn:
        entry = conn.execute(
            "select quarantine_id, reason, record from processed.quarantine where batch_id = %s",
            (line.batch_id,),
        ).fetchone()
    assert entry is not None and entry[1] == "bad_value"
    assert entry[2]["value_text"] == "positive"
    with migrated_db.connect("refiner") as conn:
        quarantine.release(
            conn, entry[0], {"value": "13.9", "unit": "g/dL", "value_text": None}, "typo"
        )
    assert rows(migrated_db, ann)["718-7"][:2] == (13.9, "g/dL")


def test_a_coded_quarantined_record_is_released_coded(
    migrated_db: DatabaseAccess, keys: KeyStore, ann: uuid.UUID, tmp_path: Path
) -> None:
    path = tmp_path / "future.csv"
    path.write_text(
        f"member_id,loinc,value,unit,effective_at\n{ann},94500-6,Not detected,,2999-01-01\n"
    )
    line = ingest(migrated_db, keys, path, ann, "csv-lab").line
    assert line.quarantined == 1
    with migrated_db.connect("refiner") as conn:
        entry = conn.execute(
            "select quarantine_id, reason from processed.quarantine where batch_id = %s",
            (line.batch_id,),
        ).fetchone()
        assert entry is not None and entry[1] == "future_timestamp"
        quarantine.release(conn, entry[0], {"start": "2024-03-04T00:00:00+00:00"})
    got = rows(migrated_db, ann)["94500-6"]
    assert got[:5] == (None, "", None, None, "Not detected")
    assert "released_from_quarantine" in got[6]  # type: ignore[operator]


@pytest.fixture
def coach_sees(migrated_db: DatabaseAccess, ann: uuid.UUID) -> Iterator[Viewer]:
    with migrated_db.connect("owner") as conn:
        conn.execute(
            "insert into governance.coach_assignments (coach, member_id) values (%s, %s)",
            ("coach-carol", ann),
        )
        consent.record(
            conn,
            member=ann,
            purpose="coaching",
            category="labs",
            granted=True,
            consent_version="v1",
            recorded_by="test",
        )
        conn.commit()
    yield Viewer("coach-carol", frozenset({"coach"}), "local")


def test_the_coachs_labs_list_a_pcr_detected(
    migrated_db: DatabaseAccess, keys: KeyStore, ann: uuid.UUID, coach_sees: Viewer, synthea: Path
) -> None:
    ingest(migrated_db, keys, synthea, ann, "fhir")
    now = dt.datetime(2020, 6, 1, tzinfo=dt.UTC)
    with migrated_db.connect("query") as conn:
        found = [r.to_json() for r in labs.results(conn, coach_sees, ann, now=now)]
    pcr = [r for r in found if r["code"] == "94531-1"]
    assert len(pcr) == 1
    assert pcr[0]["value"] is None and pcr[0]["flag"] is None
    assert (pcr[0]["value_code"], pcr[0]["value_text"]) == (
        "260373001",
        "Detected (qualifier value)",
    )
    assert pcr[0]["name"] == "SARS-CoV-2 RNA panel (NAA+probe)"
    glucose = [r for r in found if r["code"] == "2339-0"]
    assert glucose and glucose[0]["value"] == pytest.approx(96.2)
    # Uncatalogued codes have no consent category: a coach never sees them.
    assert not [r for r in found if r["code"] in ("1963-8", "72166-2")]
