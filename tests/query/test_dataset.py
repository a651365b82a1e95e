"""Study extraction: only researchers on the study, only consenting members and consented
categories, only pseudonyms."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from backend.db import migrate
from backend.db.access import DatabaseAccess
from backend.governance import consent
from backend.keys.kms import LocalKms
from backend.keys.study_keys import StudyKeys, pseudonym
from backend.query import dataset
from backend.query.viewer import Viewer

T0 = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
RITA = Viewer("rita", frozenset({"researcher"}), "eu")
OSCAR = Viewer("oscar", frozenset({"researcher"}), "eu")  # not on the study


@pytest.fixture(scope="module")
def world(migrated_db: DatabaseAccess) -> tuple[DatabaseAccess, list[uuid.UUID]]:
    db = migrated_db
    migrate.upgrade(db)
    members = [uuid.uuid4() for _ in range(4)]
    with db.connect("owner") as conn:
        conn.execute(
            "insert into governance.studies (study_id, title, created_by)"
            " values ('sleep-1', 'Sleep', 'admin'), ('old-1', 'Old', 'admin')"
        )
        conn.execute("update governance.studies set closed_at = now() where study_id = 'old-1'")
        conn.execute(
            "insert into governance.study_researchers values ('sleep-1', 'rita'), ('old-1', 'rita')"
        )
        for m in members:
            for h in range(3):
                conn.execute(
                    "insert into processed.observations (member_id, observed_at, code, value,"
                    " unit, source, raw_record_id, raw_received_at) values (%s, %s, '8867-4',"
                    " %s, '/min', 'Anna''s iPhone', gen_random_uuid(), now())",
                    (m, T0 + dt.timedelta(hours=h), 60 + h),
                )
            conn.execute(
                "insert into processed.observations (member_id, observed_at, code, value, unit,"
                " source, raw_record_id, raw_received_at) values (%s, %s, '4548-4', 5.5, '%%',"
                " 'lab', gen_random_uuid(), now())",
                (m, T0),
            )
    with db.connect("backend") as conn:
        for m in members[:3]:  # the fourth never consented
            consent.record(
                conn,
                member=m,
                purpose="study:sleep-1",
                category="wearables",
                granted=True,
                consent_version="v1",
                recorded_by="t",
            )
        consent.record(
            conn,
            member=members[0],
            purpose="study:sleep-1",
            category="labs",
            granted=True,
            consent_version="v1",
            recorded_by="t",
        )
        consent.record(
            conn,
            member=members[2],
            purpose="study:sleep-1",
            category="wearables",
            granted=False,
            consent_version="v1",
            recorded_by="t",
        )
        for m in members:
            consent.record(
                conn,
                member=m,
                purpose="study:old-1",
                category="wearables",
                granted=True,
                consent_version="v1",
                recorded_by="t",
            )
    return db, members


@pytest.fixture
def key(tmp_path: Path) -> bytes:
    return StudyKeys(tmp_path, LocalKms.from_file(tmp_path / "kms" / "m.key")).key("sleep-1")


def _extract(db: DatabaseAccess, viewer: Viewer, study: str, key: bytes, **kw: object) -> object:
    with db.connect("query") as conn:
        return dataset.extract(
            conn, viewer, study, key, start=T0, end=T0 + dt.timedelta(days=1), **kw
        )  # type: ignore[arg-type]


def test_only_consenting_members_by_pseudonym(
    world: tuple[DatabaseAccess, list[uuid.UUID]], key: bytes
) -> None:
    db, members = world
    frame = _extract(db, RITA, "sleep-1", key)
    assert list(frame.columns) == dataset.COLUMNS
    assert "source" not in frame.columns
    expected = {pseudonym(key, members[0]), pseudonym(key, members[1])}
    assert set(frame["pseudonym"]) == expected
    labs = frame[frame["code"] == "4548-4"]
    assert set(labs["pseudonym"]) == {pseudonym(key, members[0])}
    assert len(frame) == 3 + 3 + 1
    text = frame.to_csv()
    assert all(str(m) not in text for m in members) and "iPhone" not in text


def test_wide_shape(world: tuple[DatabaseAccess, list[uuid.UUID]], key: bytes) -> None:
    db, _ = world
    wide = _extract(db, RITA, "sleep-1", key, shape="wide")
    assert list(wide.columns) == ["pseudonym", "time", "4548-4", "8867-4"]
    assert len(wide) == 2 and sorted(wide["8867-4"]) == [61.0, 61.0]


def test_not_on_the_study_or_closed_study_gets_nothing(
    world: tuple[DatabaseAccess, list[uuid.UUID]], key: bytes
) -> None:
    db, _ = world
    assert _extract(db, OSCAR, "sleep-1", key).empty
    assert _extract(db, RITA, "old-1", key).empty
    with db.connect("query") as conn:
        assert dataset.on_study(conn, RITA, "sleep-1")
        assert not dataset.on_study(conn, OSCAR, "sleep-1")
        assert not dataset.on_study(conn, RITA, "old-1")


def test_coded_results_go_out_as_concepts_and_free_text_never(
    world: tuple[DatabaseAccess, list[uuid.UUID]], key: bytes
) -> None:
    db, members = world
    day = T0 - dt.timedelta(days=1)  # outside the other tests' window
    with db.connect("owner") as conn:
        for at, code, system, text in (
            (day, "260373001", "http://snomed.info/sct", "Detected"),
            (day + dt.timedelta(hours=1), None, None, "sample of J. Smith, see note"),
        ):
            conn.execute(
                "insert into processed.observations (member_id, observed_at, code, value,"
                " unit, value_code, value_system, value_text, source, raw_record_id,"
                " raw_received_at) values (%s, %s, '94500-6', null, '', %s, %s, %s, 'lab',"
                " gen_random_uuid(), now())",
                (members[0], at, code, system, text),
            )
    with db.connect("query") as conn:
        frame = dataset.extract(conn, RITA, "sleep-1", key, start=day, end=T0, codes=["94500-6"])
    assert len(frame) == 2
    coded, text = frame.to_dict("records")
    assert (coded["value_system"], coded["value_code"], coded["value_display"]) == (
        "http://snomed.info/sct",
        "260373001",
        "Detected",
    )
    assert text["value_display"] is None and "Smith" not in frame.to_csv()
