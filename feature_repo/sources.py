"""The analytics zone's feature views (SQL views, migration 0012). `event_ts` is when a
row's values are known (a day's end for daily values), `computed_at` breaks ties between
recomputations of the same `event_ts` (the newest wins)."""

from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
    PostgreSQLSource,
)

member_daily = PostgreSQLSource(
    name="member_daily",
    table="analytics.feature_member_daily",
    timestamp_field="event_ts",
    created_timestamp_column="computed_at",
    description="analytics.member_daily: one row per member and UTC day",
)

cardio_daily = PostgreSQLSource(
    name="cardio_daily",
    table="analytics.feature_cardio",
    timestamp_field="event_ts",
    created_timestamp_column="computed_at",
    description="resting heart rate and HRV per day with 7- and 28-day baselines",
)

lab_results = PostgreSQLSource(
    name="lab_results",
    table="analytics.feature_latest_labs",
    timestamp_field="event_ts",
    created_timestamp_column="computed_at",
    description="every lab result moment with the latest value of each lab as of then",
)
