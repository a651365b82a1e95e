"""Governance: tamper-evident audit log, consent ledger, Casbin policy, coach assignments,
studies, and the backend's own role.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

from backend.migrations.roles import current_roles, q

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    r = current_roles()
    backend, query = q(r.backend), q(r.query)
    op.execute(
        f"""DO $$ BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{r.backend}') THEN
                CREATE ROLE {backend} NOLOGIN;
              END IF;
            END $$"""
    )
    op.execute(f"GRANT CONNECT ON DATABASE {q(r.db)} TO {backend}")

    op.execute(
        """
        CREATE FUNCTION governance.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '%.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )

    # AUDIT: one row per request, allowed or denied. Each row's hash covers the previous
    # row's hash and its own canonical text, so an edited, deleted or reordered row breaks
    # the chain. Rows are appended only through audit_append, which serialises appenders
    # with a transaction-scoped advisory lock: concurrent requests cannot fork the chain.
    op.execute(
        """
        CREATE TABLE governance.audit_log (
            seq        bigint           PRIMARY KEY,
            at         timestamptz      NOT NULL,
            request_id uuid             NOT NULL,
            actor      text             NOT NULL,
            role       text,
            purpose    text,
            study      text,
            action     text             NOT NULL,
            resource   text             NOT NULL,
            params     jsonb            NOT NULL DEFAULT '{}',
            row_count  integer,
            outcome    text             NOT NULL CHECK (outcome IN ('allowed', 'denied', 'error')),
            status     integer,
            latency_ms double precision,
            client     text,
            prev_hash  bytea            NOT NULL,
            hash       bytea            NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX audit_at_idx ON governance.audit_log (at)")
    op.execute("CREATE INDEX audit_actor_idx ON governance.audit_log (actor, at)")
    op.execute(
        """
        CREATE FUNCTION governance.audit_hash(
            prev bytea, seq bigint, at timestamptz, request_id uuid, actor text, role text,
            purpose text, study text, action text, resource text, params jsonb,
            row_count integer, outcome text, status integer, latency_ms double precision,
            client text
        ) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
            -- jsonb's text form is canonical (sorted keys, fixed number format); the time is
            -- rendered in UTC explicitly so the session time zone cannot change the hash.
            SELECT sha256(prev || convert_to(jsonb_build_array(
                seq, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                request_id, actor, role, purpose, study, action, resource, params, row_count,
                outcome, status, latency_ms, client)::text, 'UTF8'))
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION governance.audit_append(
            p_request_id uuid, p_actor text, p_role text, p_purpose text, p_study text,
            p_action text, p_resource text, p_params jsonb, p_row_count integer,
            p_outcome text, p_status integer, p_latency_ms double precision, p_client text
        ) RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            last_seq bigint;
            last_hash bytea;
            new_at timestamptz := clock_timestamp();
        BEGIN
            PERFORM pg_advisory_xact_lock(hashtextextended('rejuve.audit_log', 0));
            SELECT a.seq, a.hash INTO last_seq, last_hash
              FROM governance.audit_log a ORDER BY a.seq DESC LIMIT 1;
            last_seq := coalesce(last_seq, 0) + 1;
            last_hash := coalesce(last_hash, '\\x'::bytea);
            INSERT INTO governance.audit_log VALUES (
                last_seq, new_at, p_request_id, p_actor, p_role, p_purpose, p_study,
                p_action, p_resource, coalesce(p_params, '{}'), p_row_count, p_outcome,
                p_status, p_latency_ms, p_client, last_hash,
                governance.audit_hash(last_hash, last_seq, new_at, p_request_id, p_actor,
                    p_role, p_purpose, p_study, p_action, p_resource,
                    coalesce(p_params, '{}'), p_row_count, p_outcome, p_status,
                    p_latency_ms, p_client));
            RETURN last_seq;
        END $$
        """
    )
    for table in ("audit_log",):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON governance.{table} "
            "FOR EACH ROW EXECUTE FUNCTION governance.refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON governance.{table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION governance.refuse_change()"
        )

    # CONSENT: an append-only ledger of grants and withdrawals per member x purpose x data
    # category, each against the version of the consent text the member saw. The effective
    # consent is the latest event; queries join it, so a withdrawal counts on the next
    # request.
    op.execute(
        """
        CREATE TABLE governance.consent_events (
            event_id        uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
            member_id       uuid        NOT NULL,
            purpose         text        NOT NULL,
            category        text        NOT NULL,
            action          text        NOT NULL CHECK (action IN ('grant', 'withdraw')),
            consent_version text        NOT NULL,
            recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
            recorded_by     text        NOT NULL,
            evidence        jsonb       NOT NULL DEFAULT '{}'
        )
        """
    )
    op.execute(
        "CREATE INDEX consent_member_idx ON governance.consent_events"
        " (member_id, purpose, category, recorded_at DESC)"
    )
    op.execute("CREATE INDEX consent_purpose_idx ON governance.consent_events (purpose, category)")
    op.execute(
        "CREATE TRIGGER consent_append_only BEFORE UPDATE OR DELETE ON governance.consent_events"
        " FOR EACH ROW EXECUTE FUNCTION governance.refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER consent_no_truncate BEFORE TRUNCATE ON governance.consent_events"
        " FOR EACH STATEMENT EXECUTE FUNCTION governance.refuse_change()"
    )
    op.execute(
        """
        CREATE VIEW governance.consent_effective AS
        SELECT DISTINCT ON (member_id, purpose, category)
               member_id, purpose, category, action = 'grant' AS granted, consent_version,
               recorded_at
          FROM governance.consent_events
         ORDER BY member_id, purpose, category, recorded_at DESC, event_id DESC
        """
    )

    # POLICY: Casbin rules (pycasbin's sqlalchemy adapter layout), in the database so every
    # backend process shares them.
    op.execute(
        """
        CREATE TABLE governance.casbin_rule (
            id    serial PRIMARY KEY,
            ptype varchar(255), v0 varchar(255), v1 varchar(255), v2 varchar(255),
            v3 varchar(255), v4 varchar(255), v5 varchar(255)
        )
        """
    )

    op.execute(
        """
        CREATE TABLE governance.coach_assignments (
            coach       text        NOT NULL,
            member_id   uuid        NOT NULL,
            assigned_at timestamptz NOT NULL DEFAULT now(),
            revoked_at  timestamptz,
            PRIMARY KEY (coach, member_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE governance.studies (
            study_id    text        PRIMARY KEY CHECK (study_id ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
            title       text        NOT NULL,
            created_by  text        NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            closed_at   timestamptz
        )
        """
    )
    op.execute(
        """
        CREATE TABLE governance.study_researchers (
            study_id   text NOT NULL REFERENCES governance.studies,
            researcher text NOT NULL,
            PRIMARY KEY (study_id, researcher)
        )
        """
    )
    # A member's Hub account, so their own requests resolve to their member id.
    op.execute("ALTER TABLE governance.members ADD COLUMN hub_user text UNIQUE")

    op.execute(f"GRANT USAGE ON SCHEMA governance, processed, analytics TO {backend}")
    op.execute(
        f"GRANT EXECUTE ON FUNCTION governance.audit_append("
        "uuid, text, text, text, text, text, text, jsonb, integer, text, integer,"
        f" double precision, text) TO {backend}"
    )
    op.execute(
        "REVOKE EXECUTE ON FUNCTION governance.audit_append("
        "uuid, text, text, text, text, text, text, jsonb, integer, text, integer,"
        " double precision, text) FROM PUBLIC"
    )
    op.execute(f"GRANT SELECT ON governance.audit_log TO {backend}")
    op.execute(f"GRANT SELECT, INSERT ON governance.consent_events TO {backend}")
    op.execute(f"GRANT SELECT ON governance.consent_effective TO {backend}, {query}")
    op.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON governance.casbin_rule,"
        f" governance.coach_assignments, governance.studies, governance.study_researchers"
        f" TO {backend}"
    )
    op.execute(f"GRANT USAGE ON SEQUENCE governance.casbin_rule_id_seq TO {backend}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE (hub_user) ON governance.members TO {backend}")
    op.execute(
        f"GRANT SELECT ON governance.coach_assignments, governance.studies,"
        f" governance.study_researchers, governance.members TO {query}"
    )
    op.execute(f"GRANT USAGE ON SCHEMA governance TO {query}")


def downgrade() -> None:
    r = current_roles()
    op.execute("ALTER TABLE governance.members DROP COLUMN hub_user")
    for table in ("study_researchers", "studies", "coach_assignments", "casbin_rule"):
        op.execute(f"DROP TABLE governance.{table}")
    op.execute("DROP VIEW governance.consent_effective")
    op.execute("DROP TABLE governance.consent_events")
    op.execute("DROP FUNCTION governance.audit_append")
    op.execute("DROP FUNCTION governance.audit_hash")
    op.execute("DROP TABLE governance.audit_log")
    op.execute("DROP FUNCTION governance.refuse_change")
    op.execute(f"REVOKE USAGE ON SCHEMA governance FROM {q(r.query)}")
    op.execute(f"REVOKE ALL ON governance.members FROM {q(r.query)}")
    op.execute(
        f"""DO $$ BEGIN
              IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{r.backend}') THEN
                REVOKE ALL ON governance.members FROM {q(r.backend)};
                REVOKE ALL ON SCHEMA governance, processed, analytics FROM {q(r.backend)};
                REVOKE ALL ON DATABASE {q(r.db)} FROM {q(r.backend)};
                DROP ROLE {q(r.backend)};
              END IF;
            END $$"""
    )
