"""Consent is an append-only ledger; the latest event per member x purpose x category wins,
and the SQL that queries join returns exactly the consented observations."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from psycopg import errors

from backend.db import migrate
from backend.db.access import DatabaseAccess
from backend.exceptions import UserError
from backend.governance import consent


@pytest.fixture(scope="module")
def db(migrated_db: DatabaseAccess) -> DatabaseAccess:
    migrate.upgrade(migrated_db)
    return migrated_db


def _observe(db: DatabaseAccess, member: uuid.UUID, code: str) -> None:
    with db.connect("owner") as conn:
        conn.execute(
            "insert into processed.observations (member_id, observed_at, code, value, unit,"
            " source, raw_record_id, raw_received_at) values (%s, now(), %s, 1, '1', 't',"
            " gen_random_uuid(), now())",
            (member, code),
        )


def _visible(db: DatabaseAccess, purpose: str, members: list[uuid.UUID]) -> set[tuple[str, str]]:
    codes, cats = consent.code_categories()
    with db.connect("query") as conn:
        rows = conn.execute(
            "select o.member_id::text, o.code from processed.observations o"
            f" join ({consent.CONSENTED_CODES}) ok using (member_id, code)"
            " where o.member_id = any(%(members)s)",
            {"purpose": purpose, "codes": codes, "categories": cats, "members": members},
        ).fetchall()
    return {(r[0], r[1]) for r in rows}


def test_grant_withdraw_regrant_and_the_query_follows(db: DatabaseAccess) -> None:
    ann, bob = uuid.uuid4(), uuid.uuid4()
    for m in (ann, bob):
        _observe(db, m, "8867-4")  # wearables
        _observe(db, m, "4548-4")  # labs
    purpose = consent.study_purpose("sleep-1")
    with db.connect("backend") as conn:
        consent.record(
            conn,
            member=ann,
            purpose=purpose,
            category="wearables",
            granted=True,
            consent_version="v1",
            recorded_by="ann",
        )
        consent.record(
            conn,
            member=bob,
            purpose=purpose,
            category="labs",
            granted=True,
            consent_version="v1",
            recorded_by="bob",
        )
    assert _visible(db, purpose, [ann, bob]) == {(str(ann), "8867-4"), (str(bob), "4548-4")}
    assert _visible(db, "coaching", [ann, bob]) == set()  # consent is per purpose

    with db.connect("backend") as conn:
        consent.record(
            conn,
            member=ann,
            purpose=purpose,
            category="wearables",
            granted=False,
            consent_version="v1",
            recorded_by="ann",
        )
    assert _visible(db, purpose, [ann, bob]) == {(str(bob), "4548-4")}  # next request

    with db.connect("backend") as conn:
        consent.record(
            conn,
            member=ann,
            purpose=purpose,
            category="wearables",
            granted=True,
            consent_version="v2",
            recorded_by="ann",
        )
        now = consent.effective(conn, ann)
        history = conn.execute(
            "select action, consent_version from governance.consent_events"
            " where member_id = %s order by recorded_at",
            (ann,),
        ).fetchall()
    assert [(c.purpose, c.category, c.granted, c.consent_version) for c in now] == [
        (purpose, "wearables", True, "v2")
    ]
    assert isinstance(now[0].recorded_at, dt.datetime)
    assert history == [("grant", "v1"), ("withdraw", "v1"), ("grant", "v2")]


def test_the_ledger_is_append_only(db: DatabaseAccess) -> None:
    for sql in (
        "update governance.consent_events set action = 'grant'",
        "delete from governance.consent_events",
    ):
        with db.connect("backend") as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute(sql)
        with db.connect("owner") as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute(sql)


def test_unknown_category_or_purpose_is_refused(db: DatabaseAccess) -> None:
    with db.connect("backend") as conn:
        with pytest.raises(UserError, match="unknown data category 'dna'"):
            consent.record(
                conn,
                member=uuid.uuid4(),
                purpose="coaching",
                category="dna",
                granted=True,
                consent_version="v1",
                recorded_by="x",
            )
        with pytest.raises(UserError, match="unknown purpose 'marketing'"):
            consent.record(
                conn,
                member=uuid.uuid4(),
                purpose="marketing",
                category="labs",
                granted=True,
                consent_version="v1",
                recorded_by="x",
            )
