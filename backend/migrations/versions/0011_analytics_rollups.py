"""The analytics zone: hourly and daily rollups per member x code, member-day summaries,
and the invalidation queues that keep them exact under late data.

TimescaleDB's Apache build has no continuous aggregates; their idea is kept (refresh only
what changed) without their known failure (one transaction invalidates a whole time
*range*, so one late row recomputes months: timescale/timescaledb#8132). Here every
transaction that changes observations queues the exact (member, code, hour) keys it
touched, in the same transaction: exactly once, like the batch ledger. The rollup worker
claims queued keys (DELETE ... SKIP LOCKED, so a crash gives them back), recomputes those
buckets from scratch and queues the member-days for the feature store. Progress is the
queue itself, in ingestion order: no event-time watermark, so a late row is never missed.

Each rollup row carries what merging needs (count, sum, sum of squares, min, max, last,
distinct minutes with data): a week or month is merged from days exactly.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

from alembic import op

from backend.migrations.roles import current_roles, q

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_ROLLUP_COLUMNS = """
            member_id   uuid             NOT NULL,
            code        text             NOT NULL,
            bucket      timestamptz      NOT NULL,
            n           bigint           NOT NULL,
            sum         double precision NOT NULL,
            sumsq       double precision NOT NULL,
            min         double precision NOT NULL,
            max         double precision NOT NULL,
            last        double precision NOT NULL,
            last_at     timestamptz      NOT NULL,
            minutes     integer          NOT NULL,
            unit        text             NOT NULL,
            computed_at timestamptz      NOT NULL DEFAULT now(),
            PRIMARY KEY (member_id, code, bucket)
"""


def upgrade() -> None:
    r = current_roles()
    refiner, query, backend = q(r.refiner), q(r.query), q(r.backend)
    op.execute(
        """
        CREATE TABLE analytics.rollup_dirty (
            id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            member_id uuid        NOT NULL,
            code      text        NOT NULL,
            hour      timestamptz NOT NULL,
            cause     text        NOT NULL
                      CHECK (cause IN ('refine', 'release', 'reject', 'erasure', 'rebuild')),
            queued_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # A claim takes every queued entry of the keys it picked.
    op.execute(
        "CREATE INDEX rollup_dirty_key_idx ON analytics.rollup_dirty (member_id, code, hour)"
    )
    for name, chunk in (("rollup_hourly", "7 days"), ("rollup_daily", "90 days")):
        op.execute(f"CREATE TABLE analytics.{name} ({_ROLLUP_COLUMNS})")
        op.execute(
            f"SELECT create_hypertable('analytics.{name}', by_range('bucket', INTERVAL '{chunk}'))"
        )
    op.execute(
        """
        CREATE TABLE analytics.member_daily (
            member_id        uuid             NOT NULL,
            day              date             NOT NULL,
            -- When the day's values are known (its end, UTC): what point-in-time joins use,
            -- so a day's summary never leaks into that same morning.
            event_ts         timestamptz      NOT NULL,
            computed_at      timestamptz      NOT NULL DEFAULT now(),
            sleep_minutes    double precision,
            sleep_efficiency double precision,
            steps            double precision,
            active_minutes   double precision,
            resting_hr       double precision,
            hrv_ms           double precision,
            body_weight_kg   double precision,
            bp_systolic      double precision,
            bp_diastolic     double precision,
            wear_minutes     integer          NOT NULL,
            PRIMARY KEY (member_id, day)
        )
        """
    )
    op.execute(
        "CREATE INDEX member_daily_event_idx ON analytics.member_daily (member_id, event_ts)"
    )
    op.execute(
        """
        CREATE TABLE analytics.feature_dirty (
            id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            member_id uuid        NOT NULL,
            day       date        NOT NULL,
            queued_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # Who writes what: whoever changes observations queues the keys (the refiner refines,
    # the backend releases and rejects quarantine); the rollup worker (refiner role) owns
    # the rollups; the backend's readers read them.
    op.execute(f"GRANT USAGE ON SCHEMA analytics TO {refiner}, {backend}")
    op.execute(f"GRANT INSERT ON analytics.rollup_dirty TO {refiner}, {backend}")
    # UPDATE only because claiming (SELECT ... FOR UPDATE SKIP LOCKED) requires it.
    op.execute(f"GRANT SELECT, UPDATE, DELETE ON analytics.rollup_dirty TO {refiner}")
    op.execute(
        "GRANT SELECT, INSERT, DELETE ON analytics.rollup_hourly, analytics.rollup_daily,"
        f" analytics.member_daily TO {refiner}"
    )
    op.execute(f"GRANT INSERT ON analytics.feature_dirty TO {refiner}")
    op.execute(
        "GRANT SELECT ON analytics.rollup_hourly, analytics.rollup_daily,"
        f" analytics.member_daily, analytics.rollup_dirty TO {query}"
    )


def downgrade() -> None:
    for name in ("feature_dirty", "member_daily", "rollup_daily", "rollup_hourly", "rollup_dirty"):
        op.execute(f"DROP TABLE analytics.{name}")
