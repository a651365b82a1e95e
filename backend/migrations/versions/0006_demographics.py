"""Demographics of members, for cohort criteria: year of birth and administrative sex.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from alembic import op

from backend.migrations.roles import current_roles, q

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    r = current_roles()
    # Data minimisation: the year of birth answers every age question a cohort asks; a
    # full date of birth is a quasi-identifier we would only have to protect. Sex uses
    # FHIR's AdministrativeGender codes.
    op.execute(
        """
        ALTER TABLE governance.members
          ADD COLUMN birth_year smallint CHECK (birth_year BETWEEN 1900 AND 2100),
          ADD COLUMN sex text CHECK (sex IN ('female', 'male', 'other', 'unknown'))
        """
    )
    op.execute(f"GRANT UPDATE (birth_year, sex) ON governance.members TO {q(r.backend)}")


def downgrade() -> None:
    r = current_roles()
    op.execute(f"REVOKE UPDATE (birth_year, sex) ON governance.members FROM {q(r.backend)}")
    op.execute("ALTER TABLE governance.members DROP COLUMN birth_year, DROP COLUMN sex")
