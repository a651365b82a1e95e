"""Zones (raw, processed, analytics, governance), their first tables and least-privilege roles.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

from backend.migrations.roles import current_roles, q

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Chunk intervals, sized for the 100,000-member load (~2,000-3,500 samples/s):
# - raw.records holds whole payloads (a device batch or a file part per row), so rows are
#   few (tens per second) and large (TOASTed); a day per chunk keeps the chunk count low
#   and its indexes tiny, and day-sized chunks are the unit of backup and retention.
# - processed.observations gets one row per sample: ~250 M rows/day at full load, with
#   ~40 B per index entry per index. TimescaleDB's guidance is that the indexes of the
#   chunks being written fit in ~25 % of memory (6 GB on a 24 GB node): 12 h chunks
#   (~125 M rows, ~5 GB of index for the two indexes) stay inside it, a day would not.
RAW_CHUNK = "1 day"
OBSERVATION_CHUNK = "12 hours"


def upgrade() -> None:
    r = current_roles()
    db = q(r.db)
    ingest, refiner, query = q(r.ingest), q(r.refiner), q(r.query)

    # Trusted extension: the database owner may create it without superuser.
    op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    for schema in ("raw", "processed", "analytics", "governance"):
        op.execute(f"CREATE SCHEMA {schema}")

    # Application roles start without LOGIN or password; `rejuve migrate` sets a
    # generated password afterwards, so no secret ever sits in a migration.
    for role in r.app.values():
        op.execute(
            f"""DO $$ BEGIN
                  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                    CREATE ROLE {q(role)} NOLOGIN;
                  END IF;
                END $$"""
        )
        op.execute(f"GRANT CONNECT ON DATABASE {db} TO {q(role)}")

    # RAW zone: payloads exactly as received (ciphertext once envelope encryption lands).
    op.execute(
        """
        CREATE TABLE raw.records (
            record_id    uuid        NOT NULL,
            received_at  timestamptz NOT NULL DEFAULT now(),
            source       text        NOT NULL,
            content_type text        NOT NULL,
            payload      bytea       NOT NULL,
            digest       bytea       NOT NULL CHECK (octet_length(digest) = 32),
            member_id    uuid,
            region       text        NOT NULL,
            batch_id     uuid        NOT NULL,
            -- a hypertable's unique keys must contain its time column
            PRIMARY KEY (received_at, record_id)
        )
        """
    )
    op.execute(
        f"SELECT create_hypertable('raw.records', by_range('received_at', INTERVAL '{RAW_CHUNK}'))"
    )
    op.execute("CREATE INDEX records_batch_idx ON raw.records (batch_id)")
    op.execute("CREATE INDEX records_digest_idx ON raw.records (digest)")
    op.execute("CREATE INDEX records_member_idx ON raw.records (member_id, received_at DESC)")
    op.execute(
        """
        CREATE FUNCTION raw.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- Hook for the erasure procedure (crypto-shredding, a later migration): it will
            -- set this transaction-local flag. Nothing else may change the raw zone.
            IF TG_OP = 'DELETE' AND current_setting('rejuve.raw_erasure', true) = 'on' THEN
                RETURN OLD;
            END IF;
            RAISE EXCEPTION 'the raw zone is immutable: % on %.% refused',
                TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'erasure is crypto-shredding through the erasure procedure';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER records_immutable BEFORE UPDATE OR DELETE ON raw.records "
        "FOR EACH ROW EXECUTE FUNCTION raw.refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON raw.records "
        "FOR EACH STATEMENT EXECUTE FUNCTION raw.refuse_change()"
    )

    # PROCESSED zone: one row per measurement, LOINC code + UCUM unit, lineage to raw.
    op.execute(
        """
        CREATE TABLE processed.observations (
            member_id         uuid             NOT NULL,
            observed_at       timestamptz      NOT NULL,
            code              text             NOT NULL,
            value             double precision NOT NULL,
            unit              text             NOT NULL,
            source            text             NOT NULL,
            raw_record_id     uuid             NOT NULL,
            raw_received_at   timestamptz      NOT NULL,
            tz_offset_minutes smallint,
            quality_flags     text[]           NOT NULL DEFAULT '{}',
            processed_at      timestamptz      NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "SELECT create_hypertable('processed.observations', "
        f"by_range('observed_at', INTERVAL '{OBSERVATION_CHUNK}'))"
    )
    op.execute(
        "CREATE INDEX observations_member_code_idx "
        "ON processed.observations (member_id, code, observed_at DESC)"
    )
    op.execute("CREATE INDEX observations_raw_idx ON processed.observations (raw_record_id)")
    op.execute(
        """
        CREATE TABLE processed.quarantine (
            quarantine_id   uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
            raw_record_id   uuid        NOT NULL,
            raw_received_at timestamptz NOT NULL,
            member_id       uuid,
            reason          text        NOT NULL,
            field           text,
            detail          text,
            record          jsonb       NOT NULL,
            status          text        NOT NULL DEFAULT 'open'
                            CHECK (status IN ('open', 'released', 'rejected')),
            quarantined_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX quarantine_raw_idx ON processed.quarantine (raw_record_id)")
    op.execute(
        "CREATE INDEX quarantine_open_idx ON processed.quarantine (quarantined_at) "
        "WHERE status = 'open'"
    )

    # GOVERNANCE zone: members are known by an internal pseudonymous id only.
    op.execute(
        """
        CREATE TABLE governance.members (
            member_id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
            home_region            text        NOT NULL,
            external_id_ciphertext bytea,
            enrolled_at            timestamptz NOT NULL DEFAULT now()
        )
        """
    )

    # Least privilege: each writer gets exactly what its job needs.
    op.execute(f"GRANT USAGE ON SCHEMA raw TO {ingest}, {refiner}")
    op.execute(f"GRANT INSERT ON raw.records TO {ingest}")
    op.execute(f"GRANT SELECT ON raw.records TO {refiner}")
    op.execute(f"GRANT USAGE ON SCHEMA processed TO {refiner}, {query}")
    op.execute(f"GRANT SELECT, INSERT ON processed.observations, processed.quarantine TO {refiner}")
    op.execute(f"GRANT SELECT ON processed.observations, processed.quarantine TO {query}")
    op.execute(f"GRANT USAGE ON SCHEMA analytics TO {query}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO {query}")


def downgrade() -> None:
    r = current_roles()
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA analytics REVOKE SELECT ON TABLES FROM {q(r.query)}"
    )
    for schema in ("governance", "analytics", "processed", "raw"):
        op.execute(f"DROP SCHEMA {schema} CASCADE")
    for role in r.app.values():
        # The schemas took their grants with them; CONNECT is the last thing they hold.
        # (DROP OWNED would need membership in the role, which the owner does not have.)
        op.execute(
            f"""DO $$ BEGIN
                  IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                    REVOKE ALL ON DATABASE {q(r.db)} FROM {q(role)};
                    DROP ROLE {q(role)};
                  END IF;
                END $$"""
        )
    # The timescaledb extension stays: dropping it under live sessions that loaded it is
    # unsafe, and it holds none of our data once the schemas are gone.
