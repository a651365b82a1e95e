"""The data path on a scratch database: land (encrypted) -> refine -> processed/quarantine,
exactly once, reconciled. The real refiner service is exercised in test_refiner_faults."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.db.access import DatabaseAccess
from backend.ingest.landing import land_bytes
from backend.keys import envelope
from backend.keys.keystore import KeyStore
from backend.keys.kms import KeyUnavailable, LocalKms
from backend.refine.files import enrol_members
from backend.refine.reconcile import reconcile
from backend.refine.refiner import refine_batch


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys", LocalKms.from_file(tmp_path / "kms" / "master.key"))


@pytest.fixture
def db(migrated_db: DatabaseAccess) -> Iterator[DatabaseAccess]:
    yield migrated_db


def enrolled(db: DatabaseAccess) -> uuid.UUID:
    """A new member, enrolled (landing refuses members that are not)."""
    member = uuid.uuid4()
    enrol_members(db, [member], "local")
    return member


def device_batch(member: uuid.UUID, batch_id: str, samples: list[dict[str, object]]) -> bytes:
    return json.dumps(
        {"batch_id": batch_id, "member_id": str(member), "device": "test-watch", "samples": samples}
    ).encode()


def hr(minute: int, value: float, unit: str = "count/min") -> dict[str, object]:
    return {
        "code": "8867-4",
        "value": value,
        "unit": unit,
        "start": f"2026-11-20T08:{minute:02d}:00+01:00",
    }


def land_and_refine(
    db: DatabaseAccess,
    keys: KeyStore,
    member: uuid.UUID,
    body: bytes,
    client_batch_id: str | None = None,
) -> uuid.UUID:
    with db.connect("ingest") as conn:
        receipt = land_bytes(
            conn,
            keys,
            body=body,
            source="test",
            fmt="device-batch",
            member_id=member,
            region="local",
            client_batch_id=client_batch_id,
        )
    with db.connect("refiner") as conn:
        refine_batch(conn, keys, receipt.batch_id)
    return receipt.batch_id


def test_batch_is_normalised_validated_and_reconciled(db: DatabaseAccess, keys: KeyStore) -> None:
    member = enrolled(db)
    samples = [hr(i, 60 + i) for i in range(5)] + [
        hr(10, 400),  # implausible
        {"code": "29463-7", "value": 150, "unit": "[lb_av]", "start": "2026-11-20T07:00:00Z"},
        {"code": "15074-8", "value": 5.5, "unit": "mmol/L", "start": "2026-11-20T07:30:00Z"},
        {"code": "29463-7", "value": 80, "unit": "kg/m2", "start": "2026-11-20T07:00:00Z"},
        {"code": "8867-4", "value": 70, "unit": "/min", "start": "2099-01-01T00:00:00Z"},
        {"code": "1234-5", "value": 1, "unit": "1", "start": "2026-11-20T07:00:00Z"},
    ]
    batch = land_and_refine(db, keys, member, device_batch(member, "b1", samples))
    with db.connect("query") as conn:
        rows = conn.execute(
            "select code, round(value::numeric, 2), unit, observed_at, tz_offset_minutes"
            " from processed.observations where batch_id = %s order by code, observed_at",
            (batch,),
        ).fetchall()
        quarantine = conn.execute(
            "select reason, field, locator from processed.quarantine where batch_id = %s", (batch,)
        ).fetchall()
    quarantine.sort(key=lambda r: int(r[2].removeprefix("samples[").removesuffix("]")))
    assert [(r[0], float(r[1]), r[2]) for r in rows] == [
        ("2339-0", 99.09, "mg/dL"),  # 5.5 mmol/L glucose via its molar mass
        ("29463-7", 68.04, "kg"),  # 150 lb
        *[("8867-4", float(60 + i), "/min") for i in range(5)],
    ]
    first_hr = rows[2]
    assert first_hr[3].isoformat() == "2026-11-20T07:00:00+00:00"  # stored in UTC ...
    assert first_hr[4] == 60  # ... with the source's offset kept
    assert quarantine == [
        ("implausible", "value", "samples[5]"),
        ("unit_not_convertible", "unit", "samples[8]"),
        ("future_timestamp", "start", "samples[9]"),
        ("unknown_code", "code", "samples[10]"),
    ]
    with db.connect("refiner") as conn:
        result = reconcile(conn, batch=batch)
    assert result.ok
    line = result.batches[0]
    assert (line.parsed, line.processed, line.quarantined, line.duplicate) == (11, 7, 4, 0)


def test_client_batch_id_lands_once(db: DatabaseAccess, keys: KeyStore) -> None:
    member = enrolled(db)
    body = device_batch(member, "same", [hr(1, 61)])
    with db.connect("ingest") as conn:
        first = land_bytes(
            conn,
            keys,
            body=body,
            source="s1",
            fmt="device-batch",
            member_id=member,
            region="local",
            client_batch_id="same",
        )
        again = land_bytes(
            conn,
            keys,
            body=body,
            source="s1",
            fmt="device-batch",
            member_id=member,
            region="local",
            client_batch_id="same",
        )
        other_source = land_bytes(
            conn,
            keys,
            body=body,
            source="s2",
            fmt="device-batch",
            member_id=member,
            region="local",
            client_batch_id="same",
        )
    assert not first.replayed and again.replayed and not other_source.replayed
    assert again.batch_id == first.batch_id != other_source.batch_id
    with db.connect("refiner") as conn:
        n = conn.execute(
            "select count(*) from raw.batches where client_batch_id = 'same' and source = 's1'"
        ).fetchone()
    assert n == (1,)


def test_same_content_twice_is_recorded_as_duplicates(db: DatabaseAccess, keys: KeyStore) -> None:
    member = enrolled(db)
    body = device_batch(member, "x", [hr(i, 70) for i in range(3)])
    first = land_and_refine(db, keys, member, body)
    second = land_and_refine(db, keys, member, body)
    # the same weights in pounds: the same measurement by another path
    with db.connect("refiner") as conn:
        a = reconcile(conn, batch=first).batches[0]
        b = reconcile(conn, batch=second).batches[0]
        n = conn.execute(
            "select count(*) from processed.observations where member_id = %s", (member,)
        ).fetchone()
    assert (a.processed, a.duplicate) == (3, 0)
    assert (b.processed, b.duplicate) == (0, 3)
    assert n == (3,)


def test_the_same_weight_in_another_unit_is_a_duplicate(db: DatabaseAccess, keys: KeyStore) -> None:
    member = enrolled(db)
    t = "2026-11-20T06:00:00Z"
    kg = land_and_refine(
        db,
        keys,
        member,
        device_batch(
            member, "kg", [{"code": "29463-7", "value": 68.0388555, "unit": "kg", "start": t}]
        ),
    )
    lb = land_and_refine(
        db,
        keys,
        member,
        device_batch(member, "lb", [{"code": "29463-7", "value": 150, "unit": "lb", "start": t}]),
    )
    with db.connect("refiner") as conn:
        assert reconcile(conn, batch=kg).batches[0].processed == 1
        assert reconcile(conn, batch=lb).batches[0].duplicate == 1


def test_raw_payload_is_ciphertext_and_shredding_makes_it_unreadable(
    db: DatabaseAccess, keys: KeyStore
) -> None:
    member = enrolled(db)
    body = device_batch(member, "secret", [hr(1, 77)])
    with db.connect("ingest") as conn:
        receipt = land_bytes(
            conn,
            keys,
            body=body,
            source="test",
            fmt="device-batch",
            member_id=member,
            region="local",
        )
    with db.connect("refiner") as conn:
        record_id, payload, key_id = conn.execute(
            "select record_id, payload, key_id from raw.records where batch_id = %s",
            (receipt.batch_id,),
        ).fetchone() or (None, b"", None)
    assert b"test-watch" not in payload and str(member).encode() not in payload
    assert key_id == f"{member}/1"
    assert envelope.open_sealed(keys.get(member).key, payload, record_id, member) == body
    # the ciphertext is bound to its record: moved to another record id it fails
    with pytest.raises(KeyUnavailable):
        envelope.open_sealed(keys.get(member).key, payload, uuid.uuid4(), member)
    assert keys.destroy(member)
    with pytest.raises(KeyUnavailable):
        keys.get(member)
    with pytest.raises(KeyUnavailable):  # and it is not silently re-created
        keys.get_or_create(member)


def test_unreadable_batch_is_kept_and_reported(db: DatabaseAccess, keys: KeyStore) -> None:
    member = enrolled(db)
    body = (
        b'{"batch_id": "bad", "member_id": "%s", "device": "w", "samples": [{"code": 1}]}'
        % str(member).encode()
    )
    batch = land_and_refine(db, keys, member, body)
    with db.connect("refiner") as conn:
        line = reconcile(conn, batch=batch).batches[0]
        raw = conn.execute(
            "select count(*) from raw.records where batch_id = %s", (batch,)
        ).fetchone()
    assert line.error is not None and "samples.0.code" in line.error
    assert not line.ok and line.status == "unreadable" and line.parsed == 0
    assert line.problems == [f"failed (unreadable): {line.error}"]
    assert raw == (1,)  # nothing accepted is lost: the bytes are still in raw


def test_refining_twice_is_a_no_op(db: DatabaseAccess, keys: KeyStore) -> None:
    member = enrolled(db)
    batch = land_and_refine(db, keys, member, device_batch(member, "once", [hr(2, 65)]))
    with db.connect("refiner") as conn:
        assert refine_batch(conn, keys, batch) is None
        n = conn.execute(
            "select count(*) from processed.observations where batch_id = %s", (batch,)
        ).fetchone()
    assert n == (1,)


def test_reconcile_flags_a_landed_batch_nobody_refined(db: DatabaseAccess, keys: KeyStore) -> None:
    import datetime as dt

    member = enrolled(db)
    with db.connect("ingest") as conn:
        receipt = land_bytes(
            conn,
            keys,
            body=device_batch(member, "late", [hr(3, 66)]),
            source="test",
            fmt="device-batch",
            member_id=member,
            region="local",
        )
    with db.connect("refiner") as conn:
        waiting = reconcile(conn, batch=receipt.batch_id)
        overdue = reconcile(conn, batch=receipt.batch_id, grace=dt.timedelta(0))
    assert waiting.ok and waiting.pending == 1
    assert not overdue.ok
    assert overdue.batches[0].problems == ["landed but not refined"]


def test_steward_releases_a_corrected_record_and_rejects_another(
    db: DatabaseAccess, keys: KeyStore
) -> None:
    from backend.exceptions import UserError
    from backend.refine import quarantine

    member = enrolled(db)
    samples = [
        {"code": "29463-7", "value": 80, "unit": "kg/m2", "start": "2026-11-20T07:00:00Z"},
        hr(5, 400),
    ]
    batch = land_and_refine(db, keys, member, device_batch(member, "steward", samples))
    with db.connect("refiner") as conn:
        entries = {e.reason: e for e in quarantine.list_entries(conn, batch=batch)}
        assert set(entries) == {"unit_not_convertible", "implausible"}
        wrong_unit = entries["unit_not_convertible"].quarantine_id
        # a correction that is still wrong is refused, and nothing changes
        with pytest.raises(UserError, match="still invalid: unit_not_convertible"):
            quarantine.release(conn, wrong_unit, {"unit": "m"})
        quarantine.release(conn, wrong_unit, {"unit": "kg"}, note="device sent BMI unit")
        quarantine.reject(conn, entries["implausible"].quarantine_id, note="sensor glitch")
        with pytest.raises(UserError, match="already released"):
            quarantine.release(conn, wrong_unit, {"unit": "kg"})
        rows = conn.execute(
            "select code, value, unit, quality_flags from processed.observations"
            " where batch_id = %s",
            (batch,),
        ).fetchall()
        statuses = dict(
            conn.execute(
                "select reason, status from processed.quarantine where batch_id = %s", (batch,)
            ).fetchall()
        )
        line = reconcile(conn, batch=batch).batches[0]
    assert rows == [("29463-7", 80.0, "kg", ["released_from_quarantine"])]
    assert statuses == {"unit_not_convertible": "released", "implausible": "rejected"}
    # the ledger still balances: a release adds a row, accounted as such
    assert line.ok and (line.quarantined, line.released, line.observation_rows) == (2, 1, 1)


def test_what_the_api_would_refuse_is_quarantined_when_it_comes_another_way(
    db: DatabaseAccess, keys: KeyStore
) -> None:
    """A batch landed past the API's checks (a file, or landed before them): one bad sample
    is quarantined with its reason, it does not fail the batch, and nothing is refined
    into a value the database cannot hold. A heart rate dated 0001-01-01 was accepted."""
    member = enrolled(db)
    samples = [
        hr(0, 61),
        {**hr(1, 62), "start": "0001-01-01T00:00:00Z"},
        {**hr(2, 63), "start": "1899-12-31T23:59:59Z"},
        {**hr(3, 64), "unit": "10*999/min"},
        {**hr(4, 65), "unit": "/min\u0000"},
    ]
    body = device_batch(member, "other-way", samples).replace(b"62", b"NaN", 0)
    batch = land_and_refine(db, keys, member, body)
    with db.connect("refiner") as conn:
        line = reconcile(conn, batch=batch).batches[0]
        rows = conn.execute(
            "select locator, reason, field from processed.quarantine where batch_id = %s"
            " order by locator",
            (batch,),
        ).fetchall()
    assert line.ok and line.error is None
    assert (line.parsed, line.processed, line.quarantined) == (5, 1, 4)
    assert rows == [
        ("samples[1]", "implausible_time", "start"),
        ("samples[2]", "implausible_time", "start"),
        ("samples[3]", "unit_not_convertible", "unit"),
        ("samples[4]", "unstorable_text", "unit"),
    ]
