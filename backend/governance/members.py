"""The member registry: who is enrolled, in which region, and the few demographics cohort
criteria use (year of birth, administrative sex). Enrolment is the health network's act,
not a device's: members come from here, their data from ingestion."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal, get_args

import psycopg

from backend.exceptions import UserError
from backend.ingest.formats.local_clock import zone

# FHIR AdministrativeGender.
Sex = Literal["female", "male", "other", "unknown"]
SEXES: tuple[str, ...] = get_args(Sex)


@dataclass(frozen=True)
class Enrolment:
    member_id: uuid.UUID
    region: str
    birth_year: int | None = None
    sex: str | None = None
    hub_user: str | None = None
    time_zone: str | None = None  # IANA name; None keeps the one set before


def _check(e: Enrolment) -> None:
    if e.sex is not None and e.sex not in SEXES:
        raise UserError(f"sex must be one of {', '.join(SEXES)}: {e.sex!r}")
    this_year = dt.datetime.now(dt.UTC).year
    if e.birth_year is not None and not 1900 <= e.birth_year <= this_year:
        raise UserError(f"birth year must be between 1900 and {this_year}: {e.birth_year}")
    if e.time_zone is not None:
        zone(e.time_zone)


def enrol(conn: psycopg.Connection, e: Enrolment) -> bool:
    """Register a member (True), or update the demographics of one already registered
    (False). The region and Hub account of an existing member are not changed here."""
    _check(e)
    row = conn.execute(
        """insert into governance.members
                  (member_id, home_region, birth_year, sex, hub_user, time_zone)
           values (%s, %s, %s, %s, %s, %s)
           on conflict (member_id) do update
              set birth_year = excluded.birth_year, sex = excluded.sex,
                  time_zone = coalesce(excluded.time_zone, governance.members.time_zone)
           returning (xmax = 0)""",
        (e.member_id, e.region, e.birth_year, e.sex, e.hub_user, e.time_zone),
    ).fetchone()
    conn.commit()
    return bool(row and row[0])


def set_time_zone(conn: psycopg.Connection, member_id: uuid.UUID, name: str) -> bool:
    """Set an enrolled member's IANA time zone (checked against the zone database);
    False if no such member."""
    zone(name)
    row = conn.execute(
        "update governance.members set time_zone = %s where member_id = %s returning 1",
        (name, member_id),
    ).fetchone()
    conn.commit()
    return row is not None


def age_band(birth_year: int | None, on: dt.date, width: int = 10) -> str:
    """'40-49' for someone who turns 40 to 49 in the year of `on` (the year of birth is
    all we keep, so an age is exact to within a year); 'unknown' without a birth year."""
    if birth_year is None:
        return "unknown"
    low = (on.year - birth_year) // width * width
    return f"{low}-{low + width - 1}"


@dataclass(frozen=True)
class Member:
    member_id: uuid.UUID
    hub_user: str | None
    birth_year: int | None
    sex: str | None
    enrolled_at: dt.datetime
    time_zone: str | None = None


def listing(conn: psycopg.Connection, region: str, limit: int = 10_000) -> list[Member]:
    """The members enrolled in `region`, oldest enrolment first."""
    rows = conn.execute(
        "select member_id, hub_user, birth_year, sex, enrolled_at, time_zone"
        " from governance.members where home_region = %s order by enrolled_at, member_id limit %s",
        (region, limit),
    ).fetchall()
    conn.rollback()
    return [Member(*r) for r in rows]


def count(conn: psycopg.Connection, region: str) -> int:
    """How many members are enrolled in `region`."""
    row = conn.execute(
        "select count(*) from governance.members where home_region = %s", (region,)
    ).fetchone()
    conn.rollback()
    return int(row[0]) if row else 0
