"""The Feast feature store: its registry schema, the feature views' SQL over the analytics
zone, two least-privilege roles, and study access levels.

- `feast_registry`: Feast's SQL registry tables, created here by the owner (from Feast's
  own SQLAlchemy metadata) so that no runtime role needs CREATE anywhere; the YAML sets
  `schema_mode: verify`. A Feast upgrade that changes those tables needs a migration.
- Roles: `<db>_feast` writes the registry (`rejuve features apply`) and reads nothing
  else; `<db>_features` reads the registry and the feature views, and claims queued
  member ids (DELETE on `analytics.feature_dirty`) for the materialiser. Views run with
  their owner's rights, so neither role reads `analytics.member_daily` or
  `processed.observations` directly. The backend's query role reads the views through
  the analytics zone's default privileges (0001).
- Views: `event_ts` is when a row's values are known (a day's end for daily values, the
  sample time for labs) and `computed_at` breaks ties between recomputations of the same
  `event_ts`. `member_id` is text (Feast's String join key); `member_uuid` is the indexed
  column our own SQL filters on.
- Study access levels: `aggregate` (cohort statistics only) is the default for new
  studies; studies that exist when this runs keep what they could do (`row-level`).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27
"""

from alembic import op

from backend.migrations.roles import current_roles, q

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

LAB_CODES = {"hba1c": "4548-4", "ldl": "13457-7", "hscrp": "1988-5", "fasting_glucose": "2339-0"}
VIEWS = ("feature_member_daily", "feature_cardio", "feature_latest_labs")


def _labs_view() -> str:
    codes = ", ".join(f"'{c}'" for c in LAB_CODES.values())
    cols = ",\n".join(
        f"    {name}.value AS {name}, {name}.observed_at AS {name}_at" for name in LAB_CODES
    )
    joins = "\n".join(
        f"""LEFT JOIN LATERAL (
    SELECT o.value, o.observed_at FROM processed.observations o
     WHERE o.member_id = ev.member_id AND o.code = '{code}' AND o.observed_at <= ev.event_ts
     ORDER BY o.observed_at DESC, o.processed_at DESC LIMIT 1) {name} ON true"""
        for name, code in LAB_CODES.items()
    )
    # One row per moment a lab result appears, carrying the latest value of every lab as
    # of then: a point-in-time join picks one row and gets all four with their times.
    return f"""
CREATE VIEW analytics.feature_latest_labs AS
WITH ev AS (
    SELECT member_id, observed_at AS event_ts, max(processed_at) AS computed_at
      FROM processed.observations WHERE code IN ({codes})
     GROUP BY member_id, observed_at)
SELECT ev.member_id::text AS member_id, ev.member_id AS member_uuid, ev.event_ts, ev.computed_at,
{cols}
FROM ev
{joins}
"""


def _create_registry_tables() -> None:
    # Feast's own table definitions, so the registry matches the installed Feast exactly.
    from feast.infra.registry.sql import metadata

    bind = op.get_bind()
    bind.exec_driver_sql("SET LOCAL search_path TO feast_registry")
    metadata.create_all(bind)
    bind.exec_driver_sql("SET LOCAL search_path TO DEFAULT")


def upgrade() -> None:
    r = current_roles()
    feast, features, query = q(r.feast), q(r.features), q(r.query)
    for role in (r.feast, r.features):
        # 0001 creates every application role on a new database; this one may predate them.
        op.execute(
            f"""DO $$ BEGIN
                  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                    CREATE ROLE {q(role)} NOLOGIN;
                  END IF;
                END $$"""
        )
        op.execute(f"GRANT CONNECT ON DATABASE {q(r.db)} TO {q(role)}")

    op.execute("CREATE SCHEMA feast_registry")
    _create_registry_tables()
    op.execute(f"GRANT USAGE ON SCHEMA feast_registry TO {feast}, {features}")
    op.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA feast_registry TO {feast}"
    )
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA feast_registry TO {features}")

    op.execute(
        """
        CREATE VIEW analytics.feature_member_daily AS
        SELECT member_id::text AS member_id, member_id AS member_uuid, day, event_ts, computed_at,
               round(steps)::bigint AS steps,
               round(active_minutes)::bigint AS active_minutes,
               wear_minutes::bigint AS wear_minutes,
               round(sleep_minutes)::bigint AS sleep_minutes,
               sleep_efficiency
          FROM analytics.member_daily
        """
    )
    # Baselines over the calendar days up to and including the row's day (missing days
    # are absent, not zero); all of them are known at the row's event_ts (the day's end).
    op.execute(
        """
        CREATE VIEW analytics.feature_cardio AS
        SELECT member_id::text AS member_id, member_id AS member_uuid, day, event_ts,
               max(computed_at) OVER w28 AS computed_at,
               resting_hr, hrv_ms,
               avg(resting_hr) OVER w7 AS resting_hr_7d,
               avg(resting_hr) OVER w28 AS resting_hr_28d,
               avg(hrv_ms) OVER w7 AS hrv_ms_7d,
               avg(hrv_ms) OVER w28 AS hrv_ms_28d
          FROM analytics.member_daily
        WINDOW w7 AS (PARTITION BY member_id ORDER BY day
                      RANGE BETWEEN INTERVAL '6 days' PRECEDING AND CURRENT ROW),
               w28 AS (PARTITION BY member_id ORDER BY day
                       RANGE BETWEEN INTERVAL '27 days' PRECEDING AND CURRENT ROW)
        """
    )
    op.execute(_labs_view())
    views = ", ".join(f"analytics.{v}" for v in VIEWS)
    op.execute(f"GRANT USAGE ON SCHEMA analytics TO {features}")
    op.execute(f"GRANT SELECT ON {views} TO {features}, {query}")
    # The claim is DELETE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED); row locks
    # need UPDATE on some column: one column no one reads, so it can change nothing useful.
    op.execute(f"GRANT SELECT, DELETE, UPDATE (queued_at) ON analytics.feature_dirty TO {features}")

    op.execute(
        "ALTER TABLE governance.studies ADD COLUMN access_level text NOT NULL"
        " DEFAULT 'row-level' CHECK (access_level IN ('aggregate', 'row-level'))"
    )
    op.execute("ALTER TABLE governance.studies ALTER COLUMN access_level SET DEFAULT 'aggregate'")


def downgrade() -> None:
    r = current_roles()
    op.execute("ALTER TABLE governance.studies DROP COLUMN access_level")
    for v in reversed(VIEWS):
        op.execute(f"DROP VIEW analytics.{v}")
    op.execute(f"REVOKE ALL ON analytics.feature_dirty FROM {q(r.features)}")
    op.execute(f"REVOKE USAGE ON SCHEMA analytics FROM {q(r.features)}")
    op.execute("DROP SCHEMA feast_registry CASCADE")
    # The roles themselves belong to 0001 (every application role does); they keep CONNECT.
