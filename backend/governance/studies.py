"""Studies: the purpose a researcher declares on every request, and who works on each.
Consent is given per study (`study:<id>`), so a study's researchers see only its
consenting members; a closed study answers nobody."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

import psycopg

from backend.exceptions import Forbidden, Invalid, NotFound

STUDY_ID = r"^[a-z0-9][a-z0-9-]{1,62}$"


class NoSuchStudy(NotFound):
    pass


class NoSuchResearcher(Invalid):
    pass


class AccountDirectory(Protocol):
    """Who has an account, with which platform roles (None: no such account)."""

    def roles_of(self, name: str) -> frozenset[str] | None: ...


@dataclass(frozen=True)
class Study:
    study_id: str
    title: str
    created_by: str
    created_at: dt.datetime
    closed_at: dt.datetime | None
    researchers: tuple[str, ...]
    access_level: str = "aggregate"


def create(conn: psycopg.Connection, study_id: str, title: str, created_by: str) -> bool:
    """True if created; False if a study of that id exists already (unchanged)."""
    with conn.transaction():
        n = conn.execute(
            "insert into governance.studies (study_id, title, created_by) values (%s, %s, %s)"
            " on conflict (study_id) do nothing",
            (study_id, title, created_by),
        ).rowcount
    return n > 0


def _exists(conn: psycopg.Connection, study_id: str) -> None:
    row = conn.execute(
        "select 1 from governance.studies where study_id = %s", (study_id,)
    ).fetchone()
    if row is None:
        raise NoSuchStudy(f"no study {study_id}")


def require_account(accounts: AccountDirectory, researcher: str) -> None:
    if "researcher" not in (accounts.roles_of(researcher) or ()):
        raise NoSuchResearcher(
            f"refused: {researcher} has no account with the researcher role"
            f" (create it first: rejuve users add {researcher} --role researcher)"
        )


def add_researcher(
    conn: psycopg.Connection,
    study_id: str,
    researcher: str,
    *,
    accounts: AccountDirectory | None = None,
) -> bool:
    """`accounts`, when given, must know the researcher: a membership for a name nobody
    holds yet would be inherited by whoever is next given that name."""
    if accounts is not None:
        require_account(accounts, researcher)
    with conn.transaction():
        _exists(conn, study_id)
        n = conn.execute(
            "insert into governance.study_researchers (study_id, researcher) values (%s, %s)"
            " on conflict do nothing",
            (study_id, researcher),
        ).rowcount
    return n > 0


def remove_researcher(conn: psycopg.Connection, study_id: str, researcher: str) -> bool:
    with conn.transaction():
        _exists(conn, study_id)
        n = conn.execute(
            "delete from governance.study_researchers where study_id = %s and researcher = %s",
            (study_id, researcher),
        ).rowcount
    return n > 0


def close(conn: psycopg.Connection, study_id: str) -> bool:
    """Close a study (for good: its researchers' requests are refused from now on)."""
    with conn.transaction():
        _exists(conn, study_id)
        n = conn.execute(
            "update governance.studies set closed_at = now()"
            " where study_id = %s and closed_at is null",
            (study_id,),
        ).rowcount
    return n > 0


ACCESS_LEVELS = ("aggregate", "row-level")


def set_access_level(conn: psycopg.Connection, study_id: str, level: str) -> bool:
    """`aggregate`: cohort statistics only (under disclosure control); `row-level`:
    pseudonymised extracts and training sets too. True if it changed."""
    if level not in ACCESS_LEVELS:
        raise Invalid(f"access level must be one of {', '.join(ACCESS_LEVELS)}")
    with conn.transaction():
        _exists(conn, study_id)
        n = conn.execute(
            "update governance.studies set access_level = %s"
            " where study_id = %s and access_level <> %s",
            (level, study_id, level),
        ).rowcount
    return n > 0


def require_row_level(conn: psycopg.Connection, study_id: str) -> None:
    """Row-level data (extracts, training sets) only from a `row-level` study: 403."""
    row = conn.execute(
        "select access_level = 'row-level' from governance.studies where study_id = %s",
        (study_id,),
    ).fetchone()
    conn.rollback()
    if not (row and row[0]):
        raise Forbidden("this study's access level is aggregate: cohort statistics only")


def listing(conn: psycopg.Connection, researcher: str | None = None) -> list[Study]:
    """Every study, or only those `researcher` works on."""
    rows = conn.execute(
        """select s.study_id, s.title, s.created_by, s.created_at, s.closed_at, s.access_level,
                  coalesce(array_agg(r.researcher order by r.researcher)
                           filter (where r.researcher is not null), '{}')
             from governance.studies s
             left join governance.study_researchers r using (study_id)
            where %(who)s::text is null or exists (
                  select 1 from governance.study_researchers mine
                   where mine.study_id = s.study_id and mine.researcher = %(who)s)
            group by s.study_id order by s.created_at, s.study_id limit 10000""",
        {"who": researcher},
    ).fetchall()
    conn.rollback()
    return [
        Study(
            study_id=r[0],
            title=r[1],
            created_by=r[2],
            created_at=r[3],
            closed_at=r[4],
            access_level=r[5],
            researchers=tuple(r[6]),
        )
        for r in rows
    ]
