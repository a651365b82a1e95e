"""The differencing guard's memory, in the database: shared by every backend process.

`scope_lock` must be taken in the transaction that checks and records one answer, so
two concurrent answers for the same researcher and study cannot both pass the guard
before either is recorded."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import psycopg

from backend.governance.disclosure import Footprint


def scope_lock(conn: psycopg.Connection, researcher: str, study: str) -> None:
    conn.execute(
        "select pg_advisory_xact_lock(hashtextextended(%s, 1))",
        (f"footprints|{researcher}|{study}",),
    )


class DbFootprintStore:
    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def get(self, researcher: str, study: str) -> Iterable[Footprint]:
        rows = self.conn.execute(
            "select members, released from governance.disclosure_footprints"
            " where researcher = %s and study = %s",
            (researcher, study),
        ).fetchall()
        return [Footprint(frozenset(r[0]), bool(r[1])) for r in rows]

    def put(self, researcher: str, study: str, footprints: Sequence[Footprint]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(
                "insert into governance.disclosure_footprints (researcher, study, members,"
                " released) values (%s, %s, %s, %s)",
                [(researcher, study, sorted(fp.members), fp.released) for fp in footprints],
            )
