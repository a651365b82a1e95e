"""Owner edits leave a trace: every UPDATE, DELETE and TRUNCATE of processed observations,
coach assignments and study memberships is written to an append-only change log.

The database owner could change a member's values or give a coach a member with no
trace. These tables have legitimate writers (revoking an assignment is an UPDATE; an
erasure may delete observations), so changes are recorded rather than refused. The log
names the row by its key and the columns that changed, never the values: it must not
become a second copy of health data that outlives erasure. Disabling these triggers is
seen by `rejuve audit verify` (pg_trigger state); the log's head is part of every signed
audit anchor, so deleting log rows is seen too.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from alembic import op

from backend.migrations.roles import current_roles, q

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# table -> the columns that name one of its rows
WATCHED = {
    "processed.observations": ("member_id", "observed_at", "code", "raw_record_id"),
    "governance.coach_assignments": ("coach", "member_id"),
    "governance.study_researchers": ("study_id", "researcher"),
}


def upgrade() -> None:
    r = current_roles()
    op.execute(
        """
        CREATE TABLE governance.change_log (
            id            bigserial   PRIMARY KEY,
            at            timestamptz NOT NULL DEFAULT clock_timestamp(),
            table_name    text        NOT NULL,
            op            text        NOT NULL CHECK (op IN ('UPDATE', 'DELETE', 'TRUNCATE')),
            db_user       text        NOT NULL,
            session_user_ text        NOT NULL,
            application   text,
            row_key       jsonb,
            changed       text[]
        )
        """
    )
    op.execute(
        """
        CREATE FUNCTION governance.log_change() RETURNS trigger LANGUAGE plpgsql
        SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            old_row jsonb;
            new_row jsonb;
            key jsonb := '{}';
            col text;
            diff text[];
        BEGIN
            -- The first argument names the table: on a hypertable the trigger fires on
            -- the chunk, whose name means nothing to an auditor. The rest are key columns.
            IF TG_OP = 'TRUNCATE' THEN
                INSERT INTO governance.change_log
                    (table_name, op, db_user, session_user_, application)
                VALUES (TG_ARGV[0], TG_OP, current_user,
                        session_user, current_setting('application_name', true));
                RETURN NULL;
            END IF;
            old_row := to_jsonb(OLD);
            FOREACH col IN ARRAY TG_ARGV[1:] LOOP
                key := key || jsonb_build_object(col, old_row -> col);
            END LOOP;
            IF TG_OP = 'UPDATE' THEN
                new_row := to_jsonb(NEW);
                SELECT array_agg(k ORDER BY k) INTO diff
                  FROM jsonb_object_keys(old_row) k
                 WHERE old_row -> k IS DISTINCT FROM new_row -> k;
            END IF;
            INSERT INTO governance.change_log
                (table_name, op, db_user, session_user_, application, row_key, changed)
            VALUES (TG_ARGV[0], TG_OP, current_user, session_user,
                    current_setting('application_name', true), key, diff);
            RETURN NULL;
        END $$
        """
    )
    for table, key in WATCHED.items():
        name = table.split(".")[1]
        args = ", ".join(f"'{c}'" for c in (table, *key))
        op.execute(
            f"CREATE TRIGGER {name}_changes AFTER UPDATE OR DELETE ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION governance.log_change({args})"
        )
        op.execute(
            f"CREATE TRIGGER {name}_truncate BEFORE TRUNCATE ON {table}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION governance.log_change('{table}')"
        )
    op.execute(
        "CREATE TRIGGER change_log_append_only BEFORE UPDATE OR DELETE ON governance.change_log"
        " FOR EACH ROW EXECUTE FUNCTION governance.refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER change_log_no_truncate BEFORE TRUNCATE ON governance.change_log"
        " FOR EACH STATEMENT EXECUTE FUNCTION governance.refuse_change()"
    )
    op.execute("REVOKE EXECUTE ON FUNCTION governance.log_change() FROM PUBLIC")
    # `rejuve audit verify` reads the log and the catalog as the backend role.
    op.execute(f"GRANT SELECT ON governance.change_log TO {q(r.backend)}")


def downgrade() -> None:
    for table in WATCHED:
        name = table.split(".")[1]
        op.execute(f"DROP TRIGGER {name}_changes ON {table}")
        op.execute(f"DROP TRIGGER {name}_truncate ON {table}")
    op.execute("DROP TABLE governance.change_log")
    op.execute("DROP FUNCTION governance.log_change()")
