"""The member's time zone: an IANA name (`Europe/Berlin`), for sources that write wall-clock
times without an offset (Fitbit). Set at enrolment or with `rejuve members zone`; landing
reads it when a file of such a format comes without `--tz`.

The name is checked against the zone database (zoneinfo) where it is set; the column
only keeps out what could never be one (no zone name is longer than 64 characters or
holds a space).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27
"""

from alembic import op

from backend.migrations.roles import current_roles, q

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    r = current_roles()
    op.execute(
        """
        ALTER TABLE governance.members
          ADD COLUMN time_zone text CHECK (time_zone ~ '^[A-Za-z0-9_+/-]{1,64}$')
        """
    )
    op.execute(f"GRANT UPDATE (time_zone) ON governance.members TO {q(r.backend)}")
    # Landing (the ingest role) resolves a file's local times with it.
    op.execute(f"GRANT SELECT (time_zone) ON governance.members TO {q(r.ingest)}")


def downgrade() -> None:
    r = current_roles()
    op.execute(f"REVOKE SELECT (time_zone) ON governance.members FROM {q(r.ingest)}")
    op.execute(f"REVOKE UPDATE (time_zone) ON governance.members FROM {q(r.backend)}")
    op.execute("ALTER TABLE governance.members DROP COLUMN time_zone")
