"""Cohort statistics under disclosure control, with the differencing guard in the
database: the obvious attack (the same cohort minus one member) gets nothing new."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pandas as pd
import pytest

from backend.db import migrate
from backend.db.access import DatabaseAccess
from backend.governance import members as members_registry
from backend.keys.kms import LocalKms
from backend.keys.study_keys import StudyKeys
from backend.query import cohort
from backend.query.viewer import Viewer
from tests import seed

T0 = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)  # a Monday
RITA = Viewer("rita", frozenset({"researcher"}), "eu")


@pytest.fixture(scope="module")
def db(migrated_db: DatabaseAccess) -> DatabaseAccess:
    db = migrated_db
    migrate.upgrade(db)
    members = [uuid.uuid4() for _ in range(30)]
    with db.connect("owner") as conn:
        seed.study(conn, "hr-1", ["rita", "rhea", "remy"])
        seed.observations(
            conn,
            [
                (m, T0 + dt.timedelta(days=d, hours=i), "8867-4", 60 + n % 20 + i, "/min")
                for n, m in enumerate(members)
                for d in (0, 7)
                for i in range(3)
            ]
            # the first 25 have a raised HbA1c; the fourth week has only 3 members
            + [(m, T0, "4548-4", 6.8 if n < 25 else 5.2, "%") for n, m in enumerate(members)]
            + [(m, T0 + dt.timedelta(days=21), "8867-4", 70, "/min") for m in members[:3]],
        )
        seed.rolled_up(conn)
    with db.connect("owner") as conn:
        seed.study(conn, "hr-2", ["dora", "dan", "dee", "dina"])
    with db.connect("backend") as conn:
        seed.consent_all(conn, members, "study:hr-1")
        seed.consent_all(conn, members, "study:hr-2")
        # 14 women born in 1980, 15 men born in 1960, one member never enrolled.
        for n, m in enumerate(members[:29]):
            woman = n < 14
            members_registry.enrol(
                conn,
                members_registry.Enrolment(
                    m, "eu", birth_year=1980 if woman else 1960, sex="female" if woman else "male"
                ),
            )
    return db


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    root = tmp_path_factory.mktemp("keys")
    return StudyKeys(Path(root), LocalKms.from_file(Path(root) / "m.key")).key("hr-1")


def _protected(
    db: DatabaseAccess,
    key: bytes,
    viewer: Viewer = RITA,
    study: str = "hr-1",
    days: int = 28,
    **kw: object,
) -> cohort.disclosure.ProtectedTable:
    with db.connect("query") as q, db.connect("backend") as b:
        return cohort.cohort_stats(
            q,
            b,
            viewer,
            study,
            key,
            code="8867-4",
            start=T0,
            end=T0 + dt.timedelta(days=days),
            period="week",
            **kw,  # type: ignore[arg-type]
        )


def _ask(db: DatabaseAccess, key: bytes, **kw: object) -> pd.DataFrame:
    return _protected(db, key, **kw).table


def _counts(table: pd.DataFrame) -> dict[str, object]:
    return {
        str(p): (None if pd.isna(c) else int(c))
        for p, c in zip(table.index, table["count"], strict=True)
    }


def test_small_weeks_are_suppressed_with_a_complement(db: DatabaseAccess, key: bytes) -> None:
    counts = _counts(_ask(db, key))
    assert set(counts) == {"2026-11-02", "2026-11-09", "2026-11-23", "Total"}
    assert counts["2026-11-23"] is None  # 3 members: suppressed
    # and the total cannot give it away: a complement is withheld with it
    assert sum(v is None for v in counts.values()) == 2
    assert 30 in counts.values()


def test_the_same_cohort_minus_one_member_reveals_nothing(db: DatabaseAccess, key: bytes) -> None:
    everyone = _counts(_ask(db, key))
    raised = _counts(_ask(db, key, criteria=[cohort.Criterion("4548-4", ">=", 6.5)]))
    assert 30 in everyone.values()
    # 25 members with raised HbA1c against the 30 released before: each cell differs by 5
    # people (< k = 10), so subtracting would isolate them; the guard withholds them all.
    assert all(v is None for v in raised.values())
    with db.connect("backend") as conn:
        n = conn.execute(
            "select count(*) from governance.disclosure_footprints"
            " where researcher = 'rita' and study = 'hr-1'"
        ).fetchone()
    assert n is not None and n[0] >= 8


def _ask_hr2(db: DatabaseAccess, key: bytes, who: str, **kw: object) -> pd.DataFrame:
    # A researcher of their own per test: the differencing guard's memory is per person.
    viewer = Viewer(who, frozenset({"researcher"}), "eu")
    return _protected(db, key, viewer, "hr-2", 14, **kw).table


@pytest.mark.parametrize(
    ("who", "demographics", "expected"),
    [
        ("dora", cohort.Demographics(sexes=frozenset({"female"})), 14),
        ("dan", cohort.Demographics(age_min=60), 15),  # the men: 66 in 2026
        ("dee", cohort.Demographics(sexes=frozenset({"female"}), age_max=50), 14),
    ],
)
def test_demographic_criteria_choose_the_cohort(
    db: DatabaseAccess, key: bytes, who: str, demographics: cohort.Demographics, expected: int
) -> None:
    table = _ask_hr2(db, key, who, demographics=demographics)
    assert _counts(table) == {"2026-11-02": expected, "2026-11-09": expected, "Total": expected}


def test_breakdown_by_sex_suppresses_the_unknown_and_a_complement(
    db: DatabaseAccess, key: bytes
) -> None:
    table = _ask_hr2(db, key, "dina", by=["sex"])
    counts = {
        (str(p), str(s)): (None if pd.isna(c) else int(c))
        for (p, s), c in zip(table.index, table["count"], strict=True)
    }
    # One member without demographics: a cell of 1, withheld; the week's total would give
    # it away, so the next smallest cell of that week (the 14 women) goes with it.
    assert counts[("2026-11-02", "unknown")] is None
    assert counts[("2026-11-02", "female")] is None
    assert counts[("2026-11-02", "male")] == 15
    assert counts[("2026-11-02", "Total")] == 30
    assert counts[("Total", "male")] == 15
    assert counts[("Total", "unknown")] is None


_MERGEABLE = ("mean", "sd", "min", "max")


def _same_answer(a: cohort.disclosure.ProtectedTable, b: cohort.disclosure.ProtectedTable) -> None:
    assert _counts(a.table) == _counts(b.table)
    pd.testing.assert_frame_equal(
        a.table[list(_MERGEABLE)], b.table[list(_MERGEABLE)], check_exact=False, rtol=1e-12
    )
    assert a.suppressed == [s for s in b.suppressed if s.statistic != "median"]


def test_the_daily_rollups_answer_like_the_observations(db: DatabaseAccess, key: bytes) -> None:
    rhea = Viewer("rhea", frozenset({"researcher"}), "eu")
    merged = _protected(db, key, rhea, stats=_MERGEABLE)
    # A median cannot be merged from partial aggregates: the same question with it reads
    # the observations.
    rows = _protected(db, key, rhea, stats=(*_MERGEABLE, "median"))
    assert cohort.FROM_ROLLUPS_NOTE in merged.notes
    assert cohort.FROM_ROLLUPS_NOTE not in rows.notes
    _same_answer(merged, rows)
    assert _counts(merged.table)["2026-11-23"] is None  # the 3-member week, still withheld
    assert merged.table.loc["2026-11-09", "max"] == 60 + 19 + 2


def test_criteria_read_the_rollups_too(db: DatabaseAccess, key: bytes) -> None:
    remy = Viewer("remy", frozenset({"researcher"}), "eu")
    raised = [cohort.Criterion("4548-4", ">=", 6.5)]
    merged = _protected(db, key, remy, stats=_MERGEABLE, criteria=raised)
    rows = _protected(db, key, remy, stats=(*_MERGEABLE, "median"), criteria=raised)
    assert cohort.FROM_ROLLUPS_NOTE in merged.notes
    _same_answer(merged, rows)
    assert _counts(merged.table)["Total"] == 25


def test_a_window_inside_a_day_reads_the_observations(db: DatabaseAccess, key: bytes) -> None:
    assert cohort.reads_rollups(T0, T0 + dt.timedelta(days=7), ["mean"])
    assert not cohort.reads_rollups(T0 + dt.timedelta(hours=1), T0 + dt.timedelta(days=7), ["mean"])
    assert not cohort.reads_rollups(T0, T0 + dt.timedelta(days=7), ["mean", "p90"])
    # midnight in Paris is not a UTC day boundary
    paris = dt.timezone(dt.timedelta(hours=1))
    assert not cohort.reads_rollups(
        dt.datetime(2026, 11, 2, tzinfo=paris), T0 + dt.timedelta(days=7), ["mean"]
    )
