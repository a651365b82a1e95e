"""Role names inside migrations: derived from the database being migrated, so each
database (one per region, or a scratch one in tests) gets its own role set."""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from backend.db.roles import Roles


def current_roles() -> Roles:
    db = op.get_bind().execute(text("select current_database()")).scalar_one()
    return Roles(str(db))


def q(name: str) -> str:
    """Quote an identifier with the dialect's rules (names are ours, never user input)."""
    return op.get_bind().dialect.identifier_preparer.quote(name)
