"""Who is asking: the identity the backend resolved, and the purpose they declare."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class Viewer:
    user: str  # the Hub user name
    roles: frozenset[str]
    region: str

    def has(self, role: str) -> bool:
        return role in self.roles


def target_member(conn: psycopg.Connection, viewer: Viewer, member: str) -> uuid.UUID | None:
    """The member a path names: `self` is the viewer's own member record (None if they have
    none); anything else must be a member id (None if it is not one)."""
    if member != "self":
        try:
            return uuid.UUID(member)
        except ValueError:
            return None
    row = conn.execute(
        "select member_id from governance.members where hub_user = %s", (viewer.user,)
    ).fetchone()
    conn.rollback()
    return row[0] if row else None
