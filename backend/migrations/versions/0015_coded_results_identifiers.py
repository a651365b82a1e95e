"""Results that are not numbers, and the identifiers members have at their sources.

- `processed.observations` keeps coded, text and yes/no results in the same row as a
  number would be (`value` becomes nullable; `value_code` + `value_system` for a concept,
  `value_text` for its display or a text result, `value_boolean`), not in a side table:
  one row per result keeps what every reader of the processed zone already relies on
  (one dedup key, one lineage to raw, the change log, quarantine release, reconciliation
  by counting rows, row rules by code), and a join on a hypertable of this size on every
  lab query would cost more than four mostly-null columns (nulls take no space in a row).
  A CHECK keeps every row holding some result. Rollups are numeric only: they skip rows
  whose value is null (`backend.analytics.rollups`).
- `governance.member_identifiers`: a member's identifiers at sources (FHIR
  `Patient.identifier`: system + value), unique per system, so a hospital's bundle
  resolves to the enrolled member (`backend.identity.identifiers`). Written by the
  backend role (the CLI's `rejuve members link`, and the link an ingest with `--member`
  records); nobody else reads it: identifiers are personal data and stay in the
  governance zone.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-27
"""

from alembic import op

from backend.migrations.roles import current_roles, q

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    r = current_roles()
    backend = q(r.backend)
    op.execute(
        "ALTER TABLE processed.observations"
        " ALTER COLUMN value DROP NOT NULL,"
        " ADD COLUMN value_code text,"
        " ADD COLUMN value_system text,"
        " ADD COLUMN value_text text,"
        " ADD COLUMN value_boolean boolean"
    )
    op.execute(
        "ALTER TABLE processed.observations ADD CONSTRAINT observations_has_result"
        " CHECK (value IS NOT NULL OR value_code IS NOT NULL OR value_text IS NOT NULL"
        "        OR value_boolean IS NOT NULL)"
    )
    op.execute(
        """
        CREATE TABLE governance.member_identifiers (
            system      text        NOT NULL CHECK (system <> ''),
            value       text        NOT NULL CHECK (value <> ''),
            member_id   uuid        NOT NULL REFERENCES governance.members ON DELETE CASCADE,
            how         text        NOT NULL CHECK (how IN ('cli', 'ingest')),
            recorded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (system, value)
        )
        """
    )
    op.execute(
        "CREATE INDEX member_identifiers_member_idx ON governance.member_identifiers (member_id)"
    )
    op.execute(f"GRANT SELECT, INSERT, DELETE ON governance.member_identifiers TO {backend}")


def downgrade() -> None:
    op.execute("DROP TABLE governance.member_identifiers")
    # Coded rows cannot go back into a NOT NULL value column: they are removed first.
    op.execute("DELETE FROM processed.observations WHERE value IS NULL")
    op.execute("ALTER TABLE processed.observations DROP CONSTRAINT observations_has_result")
    op.execute(
        "ALTER TABLE processed.observations"
        " DROP COLUMN value_code, DROP COLUMN value_system, DROP COLUMN value_text,"
        " DROP COLUMN value_boolean, ALTER COLUMN value SET NOT NULL"
    )
