"""Footprints of released aggregates, for the differencing guard.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op

from backend.migrations.roles import current_roles, q

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    r = current_roles()
    # One row per cell of an answer given to a researcher in a study: the (keyed hashes of
    # the) members behind it, and whether it was shown. A new answer is compared with these
    # so that two answers cannot be subtracted to isolate fewer than k people.
    op.execute(
        """
        CREATE TABLE governance.disclosure_footprints (
            id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            researcher  text        NOT NULL,
            study       text        NOT NULL,
            members     text[]      NOT NULL,
            released    boolean     NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX footprints_scope_idx ON governance.disclosure_footprints (researcher, study)"
    )
    op.execute(f"GRANT SELECT, INSERT ON governance.disclosure_footprints TO {q(r.backend)}")


def downgrade() -> None:
    op.execute("DROP TABLE governance.disclosure_footprints")
