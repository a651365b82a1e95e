"""Whole ids or unique prefixes of them: what the CLI's tables show, the commands take."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from backend.exceptions import NotFound, UserError

if TYPE_CHECKING:
    import psycopg


def resolve_id(
    conn: psycopg.Connection, value: str, *, table: str, column: str, what: str
) -> uuid.UUID:
    """The one row of `table` whose uuid `column` is `value` or starts with it. `what`
    names a row in the messages ("quarantined record", "batch")."""
    from psycopg import sql

    text = value.strip().lower()
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    if not text or any(c not in "0123456789abcdef-" for c in text):
        raise UserError(f"{what} id '{value}' is not an id or a prefix of one")
    rows = conn.execute(
        sql.SQL(
            "select {col} from {table} where {col}::text like %s order by {col} limit 2"
        ).format(col=sql.Identifier(column), table=sql.Identifier(*table.split("."))),
        (text + "%",),
    ).fetchall()
    conn.rollback()
    if not rows:
        raise NotFound(f"no {what} with an id starting '{value}'")
    if len(rows) > 1:
        raise UserError(f"'{value}' names more than one {what}: give more of the id")
    return uuid.UUID(str(rows[0][0]))
