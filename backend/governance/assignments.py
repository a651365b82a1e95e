"""Coach assignments: which coach may see which member (with the member's coaching
consent). Revoking keeps the row, stamped, so who coached whom stays on record."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class Assignment:
    coach: str
    member_id: uuid.UUID
    assigned_at: dt.datetime
    revoked_at: dt.datetime | None


def member_exists(conn: psycopg.Connection, member: uuid.UUID) -> bool:
    row = conn.execute(
        "select exists (select 1 from governance.members where member_id = %s)", (member,)
    ).fetchone()
    return bool(row and row[0])


def assign(conn: psycopg.Connection, coach: str, member: uuid.UUID) -> bool:
    """True if this made a change (a new or revoked assignment is now in force)."""
    with conn.transaction():
        changed = conn.execute(
            "insert into governance.coach_assignments (coach, member_id) values (%s, %s)"
            " on conflict (coach, member_id) do update"
            " set assigned_at = now(), revoked_at = null"
            " where coach_assignments.revoked_at is not null",
            (coach, member),
        ).rowcount
    return changed > 0


def unassign(conn: psycopg.Connection, coach: str, member: uuid.UUID) -> bool:
    with conn.transaction():
        changed = conn.execute(
            "update governance.coach_assignments set revoked_at = now()"
            " where coach = %s and member_id = %s and revoked_at is null",
            (coach, member),
        ).rowcount
    return changed > 0


def listing(
    conn: psycopg.Connection, coach: str | None = None, current_only: bool = True
) -> list[Assignment]:
    rows = conn.execute(
        "select coach, member_id, assigned_at, revoked_at from governance.coach_assignments"
        " where (%(coach)s::text is null or coach = %(coach)s)"
        "   and (not %(current)s or revoked_at is null)"
        " order by coach, assigned_at, member_id limit 10000",
        {"coach": coach, "current": current_only},
    ).fetchall()
    conn.rollback()
    return [Assignment(*r) for r in rows]
