"""Which data categories of a member a viewer may see: all of them for the member, the
categories the member consents to for coaching for their assigned coach, nothing for
anyone else. Decided in SQL by the platform's row rules (`backend.query.row_rules`), once
per request, so a withdrawal counts from the very next one."""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

from backend.governance.consent import CATEGORIES
from backend.query import row_rules
from backend.query.viewer import Viewer

_VISIBLE = sql.SQL(
    "select {may}, {own}, coalesce((select array_agg(c.category)"
    " from governance.consent_effective c"
    " where c.member_id = %(member)s and c.purpose = 'coaching' and c.granted), '{{}}'::text[])"
).format(may=row_rules.may_see_member(), own=row_rules.MEMBER_SELF)


def visible_categories(
    conn: psycopg.Connection, viewer: Viewer, member: uuid.UUID
) -> frozenset[str] | None:
    """None if the viewer may not see this member at all (not theirs: the route says 404);
    else the categories whose data they may see (possibly none: consent withdrawn)."""
    row = conn.execute(_VISIBLE, row_rules.params(viewer, member=member)).fetchone()
    conn.rollback()
    if row is None or not row[0]:
        return None
    if row[1]:
        return frozenset(CATEGORIES)
    return frozenset(row[2] or ())
