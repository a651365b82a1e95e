"""The backend may resolve quarantined records as rejected, for stewards over HTTP: read
them and set the resolution columns, nothing else (a release still goes through the
refiner's role, since it writes observations).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from alembic import op

from backend.migrations.roles import current_roles, q

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    backend = q(current_roles().backend)
    op.execute(f"GRANT SELECT ON processed.quarantine TO {backend}")
    op.execute(
        f"GRANT UPDATE (status, resolved_at, resolution_note) ON processed.quarantine TO {backend}"
    )


def downgrade() -> None:
    op.execute(f"REVOKE ALL ON processed.quarantine FROM {q(current_roles().backend)}")
