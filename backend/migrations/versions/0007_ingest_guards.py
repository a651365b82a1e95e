"""Guards on the way in: sources enrolled for the members they may write for, batches that
cannot be refined end in a dead-letter state instead of being retried for ever, one open
quarantine entry per record, and every raw record encrypted (key_id NOT NULL).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from alembic import op

from backend.migrations.roles import current_roles, q

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    r = current_roles()
    ingest, refiner = q(r.ingest), q(r.refiner)

    # Device enrolment: a source key may land batches only for the members it is enrolled
    # for. Enrolment is an operator's act (`rejuve sources enrol`), never the source's.
    op.execute(
        """
        CREATE TABLE governance.source_members (
            source      text        NOT NULL REFERENCES governance.sources ON DELETE CASCADE,
            member_id   uuid        NOT NULL REFERENCES governance.members ON DELETE CASCADE,
            enrolled_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (source, member_id)
        )
        """
    )
    op.execute(f"GRANT SELECT ON governance.source_members TO {ingest}")
    # Landing checks that the member is enrolled at all (no orphan data from a typo).
    op.execute(f"GRANT SELECT (member_id) ON governance.members TO {ingest}")

    # Attempts at refining a batch that failed (an error other than "not this format"):
    # written outside the batch's own transaction, which the failure rolled back. After
    # `refine_max_attempts` (or one breach of the time limit) the batch is dead-lettered:
    # its ledger row says so, with the reason, and it is never retried on its own.
    op.execute(
        """
        CREATE TABLE processed.batch_attempts (
            batch_id        uuid        PRIMARY KEY,
            attempts        integer     NOT NULL CHECK (attempts > 0),
            last_error      text        NOT NULL,
            last_attempt_at timestamptz NOT NULL DEFAULT now(),
            next_attempt_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON processed.batch_attempts TO {refiner}")
    op.execute(
        "ALTER TABLE processed.batch_ledger"
        " ADD COLUMN status text NOT NULL DEFAULT 'refined'"
        "   CHECK (status IN ('refined', 'unreadable', 'dead_letter')),"
        " ADD COLUMN attempts integer NOT NULL DEFAULT 1"
    )
    op.execute("UPDATE processed.batch_ledger SET status = 'unreadable' WHERE error IS NOT NULL")

    # Quality rows for batches that failed too (the steward must see them), and no
    # completeness for a batch with nothing parsed (it is not "100 % complete").
    op.execute(
        "ALTER TABLE analytics.batch_quality ALTER COLUMN completeness DROP NOT NULL,"
        " ALTER COLUMN validity_rate DROP NOT NULL, ALTER COLUMN duplicate_rate DROP NOT NULL,"
        " ADD COLUMN error text"
    )

    # One open quarantine entry per record: a re-ingested file's bad records are counted
    # as duplicates of the open entry instead of being quarantined again.
    op.execute("ALTER TABLE processed.quarantine ADD COLUMN record_key bytea")
    op.execute(
        "CREATE UNIQUE INDEX quarantine_open_record_idx ON processed.quarantine (record_key)"
        " WHERE status = 'open'"
    )

    # One landing path: every raw record is sealed under a member's data key. Rows
    # without one could only come from the removed unencrypted path (never a batch the
    # refiner could read); they are erased through the raw zone's erasure hook.
    op.execute("SET LOCAL rejuve.raw_erasure = 'on'")
    op.execute("DELETE FROM raw.records WHERE key_id IS NULL")
    op.execute("SET LOCAL rejuve.raw_erasure = 'off'")
    op.execute("ALTER TABLE raw.records ALTER COLUMN key_id SET NOT NULL")


def downgrade() -> None:
    r = current_roles()
    op.execute("ALTER TABLE raw.records ALTER COLUMN key_id DROP NOT NULL")
    op.execute("DROP INDEX processed.quarantine_open_record_idx")
    op.execute("ALTER TABLE processed.quarantine DROP COLUMN record_key")
    op.execute(
        "DELETE FROM analytics.batch_quality WHERE completeness IS NULL OR error IS NOT NULL"
    )
    op.execute(
        "ALTER TABLE analytics.batch_quality DROP COLUMN error,"
        " ALTER COLUMN completeness SET NOT NULL, ALTER COLUMN validity_rate SET NOT NULL,"
        " ALTER COLUMN duplicate_rate SET NOT NULL"
    )
    op.execute("ALTER TABLE processed.batch_ledger DROP COLUMN status, DROP COLUMN attempts")
    op.execute("DROP TABLE processed.batch_attempts")
    op.execute(f"REVOKE SELECT (member_id) ON governance.members FROM {q(r.ingest)}")
    op.execute("DROP TABLE governance.source_members")
