"""Ingestion and refinement: batches, encryption columns, dedup key, ledger, quality, sources.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

from backend.migrations.roles import current_roles, q

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    r = current_roles()
    ingest, refiner, query = q(r.ingest), q(r.refiner), q(r.query)

    # A batch is the unit of acknowledgement: an API batch or one uploaded file. Its
    # manifest lands in the same transaction as its raw records.
    op.execute(
        """
        CREATE TABLE raw.batches (
            batch_id        uuid        PRIMARY KEY,
            source          text        NOT NULL,
            client_batch_id text,
            format          text        NOT NULL,
            file_name       text,
            member_id       uuid        NOT NULL,
            parse_options   jsonb       NOT NULL DEFAULT '{}',
            record_count    integer     NOT NULL CHECK (record_count >= 0),
            byte_count      bigint      NOT NULL CHECK (byte_count >= 0),
            digest          bytea       NOT NULL CHECK (octet_length(digest) = 32),
            received_at     timestamptz NOT NULL DEFAULT now(),
            UNIQUE (source, client_batch_id)
        )
        """
    )
    op.execute(
        "CREATE TRIGGER batches_immutable BEFORE UPDATE OR DELETE ON raw.batches "
        "FOR EACH ROW EXECUTE FUNCTION raw.refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER batches_no_truncate BEFORE TRUNCATE ON raw.batches "
        "FOR EACH STATEMENT EXECUTE FUNCTION raw.refuse_change()"
    )
    # Large files land as ordered parts of at most a few MB; key_id names the member's
    # data key (the payload is AES-GCM ciphertext under it).
    op.execute("ALTER TABLE raw.records ADD COLUMN part_no integer NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE raw.records ADD COLUMN key_id text")

    # Registered sources (devices, apps, lab feeds) and their API keys, stored hashed.
    op.execute(
        """
        CREATE TABLE governance.sources (
            source       text        PRIMARY KEY,
            key_hash     bytea       NOT NULL,
            key_prefix   text        NOT NULL,
            scopes       text[]      NOT NULL DEFAULT '{ingest}',
            created_at   timestamptz NOT NULL DEFAULT now(),
            revoked_at   timestamptz
        )
        """
    )

    op.execute("ALTER TABLE processed.observations ADD COLUMN ended_at timestamptz")
    op.execute("ALTER TABLE processed.observations ADD COLUMN qualifier text")
    op.execute("ALTER TABLE processed.observations ADD COLUMN batch_id uuid")
    # The same measurement (member, code, time, interval, qualifier, canonical value),
    # whatever path it came by, is stored once: the refiner computes this key and later
    # arrivals become duplicates.
    op.execute("ALTER TABLE processed.observations ADD COLUMN dedup_key bytea")
    op.execute(
        "CREATE UNIQUE INDEX observations_dedup_idx "
        "ON processed.observations (dedup_key, observed_at)"
    )
    op.execute("CREATE INDEX observations_batch_idx ON processed.observations (batch_id)")

    op.execute("ALTER TABLE processed.quarantine ADD COLUMN batch_id uuid")
    op.execute("ALTER TABLE processed.quarantine ADD COLUMN locator text")
    op.execute("ALTER TABLE processed.quarantine ADD COLUMN resolved_at timestamptz")
    op.execute("ALTER TABLE processed.quarantine ADD COLUMN resolution_note text")
    op.execute("CREATE INDEX quarantine_batch_idx ON processed.quarantine (batch_id)")

    # One row per refined batch, written in the same transaction as its observations:
    # the refiner's exactly-once record and the basis of reconciliation.
    op.execute(
        """
        CREATE TABLE processed.batch_ledger (
            batch_id     uuid        PRIMARY KEY,
            parsed       integer     NOT NULL,
            processed    integer     NOT NULL,
            quarantined  integer     NOT NULL,
            duplicate    integer     NOT NULL,
            unmapped     jsonb       NOT NULL DEFAULT '{}',
            records_read integer     NOT NULL,
            -- set when the whole batch could not be read (not the format it claims)
            error        text,
            refined_at   timestamptz NOT NULL DEFAULT now()
        )
        """
    )

    op.execute(
        """
        CREATE TABLE analytics.batch_quality (
            batch_id          uuid             PRIMARY KEY,
            source            text             NOT NULL,
            format            text             NOT NULL,
            received_at       timestamptz      NOT NULL,
            completeness      double precision NOT NULL,
            validity_rate     double precision NOT NULL,
            duplicate_rate    double precision NOT NULL,
            lateness_p50_s    double precision,
            lateness_p95_s    double precision,
            refine_lag_s      double precision NOT NULL,
            computed_at       timestamptz      NOT NULL DEFAULT now()
        )
        """
    )

    # Ingest: lands batches and records; reads batch manifests only (idempotency on the
    # client batch id), never payloads. Looks up source keys to authenticate.
    op.execute(f"GRANT SELECT, INSERT ON raw.batches TO {ingest}")
    op.execute(f"GRANT USAGE ON SCHEMA governance TO {ingest}, {refiner}")
    op.execute(f"GRANT SELECT ON governance.sources TO {ingest}")
    # Refiner: reads raw, writes processed + ledger + quality, resolves quarantine.
    op.execute(f"GRANT SELECT ON raw.batches TO {refiner}")
    # The refiner stages each batch in a temporary table before the deduplicating insert.
    op.execute(f"GRANT TEMPORARY ON DATABASE {q(r.db)} TO {refiner}")
    op.execute(f"GRANT SELECT, INSERT ON processed.batch_ledger TO {refiner}")
    op.execute(
        f"GRANT UPDATE (status, resolved_at, resolution_note) ON processed.quarantine TO {refiner}"
    )
    op.execute(f"GRANT USAGE ON SCHEMA analytics TO {refiner}")
    op.execute(f"GRANT SELECT, INSERT ON analytics.batch_quality TO {refiner}")
    op.execute(f"GRANT SELECT ON processed.batch_ledger TO {query}")


def downgrade() -> None:
    op.execute("DROP TABLE analytics.batch_quality")
    op.execute("DROP TABLE processed.batch_ledger")
    for col in ("batch_id", "locator", "resolved_at", "resolution_note"):
        op.execute(f"ALTER TABLE processed.quarantine DROP COLUMN {col}")
    op.execute("DROP INDEX processed.observations_dedup_idx")
    for col in ("ended_at", "qualifier", "batch_id", "dedup_key"):
        op.execute(f"ALTER TABLE processed.observations DROP COLUMN {col}")
    op.execute("DROP TABLE governance.sources")
    for col in ("part_no", "key_id"):
        op.execute(f"ALTER TABLE raw.records DROP COLUMN {col}")
    op.execute("DROP TABLE raw.batches")
    r = current_roles()
    op.execute(f"REVOKE TEMPORARY ON DATABASE {q(r.db)} FROM {q(r.refiner)}")
    op.execute(f"REVOKE USAGE ON SCHEMA governance FROM {q(r.ingest)}, {q(r.refiner)}")
    op.execute(f"REVOKE USAGE ON SCHEMA analytics FROM {q(r.refiner)}")
