"""Which time zone a file's wall-clock times are read in, decided when it lands.

A format with `local_times` (Fitbit) writes times without an offset. They are read in
the zone given at ingest (`--tz`, parse option "tz"), else in the member's own setting
(`governance.members.time_zone`); with neither, the file is refused at the door in one
line, never read as UTC. The zone used is kept with the batch (its parse options), so
refining it again later reads it the same way whatever the member's setting is then."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import psycopg

from backend.exceptions import UserError
from backend.ingest.formats.local_clock import zone
from backend.ingest.formats.registry import Format


class NoTimeZone(UserError):
    """A file of local times for a member whose zone nobody gave."""


def member_zone(conn: psycopg.Connection, member_id: uuid.UUID) -> str | None:
    row = conn.execute(
        "select time_zone from governance.members where member_id = %s", (member_id,)
    ).fetchone()
    conn.rollback()
    return row[0] if row else None


def with_zone(
    conn: psycopg.Connection,
    fmt: Format,
    member_id: uuid.UUID,
    options: Mapping[str, Any] | None,
) -> Mapping[str, Any] | None:
    """`options` with "tz" set for a format of local times; other formats' as given."""
    if not fmt.local_times:
        return options
    given = (options or {}).get("tz")
    name = given if isinstance(given, str) and given else member_zone(conn, member_id)
    if not name:
        raise NoTimeZone(
            f"{fmt.name} files hold local times without an offset and member {member_id}"
            " has no time zone: pass --tz (e.g. --tz Europe/Berlin) or set it with"
            " `rejuve members zone MEMBER ZONE`"
        )
    zone(name)
    return {**(options or {}), "tz": name}
