"""Landing payloads: the exact bytes, their digest and batch, written by the ingest role."""

from __future__ import annotations

import hashlib
import uuid

from backend.db.access import DatabaseAccess
from backend.zones import raw


def test_landed_payloads_read_back_byte_for_byte(migrated_db: DatabaseAccess) -> None:
    member = uuid.uuid4()
    bodies = [b'{"hr": 61}', b"\x00\xffbinary\n", "caf\u00e9,72\n".encode()]
    payloads = [raw.Payload("test", "application/octet-stream", b, "local", member) for b in bodies]
    batch = uuid.uuid4()
    with migrated_db.connect("ingest") as conn:
        ids = raw.land(conn, payloads, batch)
    with migrated_db.connect("refiner") as conn:
        rows = conn.execute(
            "select record_id, payload, digest, batch_id, member_id from raw.records"
            " where batch_id = %s",
            (batch,),
        ).fetchall()
    got = {r[0]: r for r in rows}
    assert set(got) == set(ids)
    for rid, body in zip(ids, bodies, strict=True):
        _, payload, digest, b, m = got[rid]
        assert payload == body
        assert digest == hashlib.sha256(body).digest()
        assert (b, m) == (batch, member)


def test_a_failed_batch_lands_nothing(migrated_db: DatabaseAccess) -> None:
    batch = uuid.uuid4()
    good = raw.Payload("test", "application/json", b"{}", "local")
    with migrated_db.connect("ingest") as conn:
        raw.land(conn, [good], batch)
        conn.rollback()
    with migrated_db.connect("refiner") as conn:
        n = conn.execute(
            "select count(*) from raw.records where batch_id = %s", (batch,)
        ).fetchone()
    assert n == (0,)
