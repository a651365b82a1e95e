"""Feature views over the analytics zone. Their `ttl` is how old a value may be and still
count (point-in-time joins ignore older rows): two days for daily values (yesterday's
day ends at today's midnight), a week for cardio (its baselines stay meaningful through a
few days without a watch), 400 days for labs (a yearly HbA1c)."""

from datetime import timedelta

from entities import member
from feast import FeatureView, Field
from feast.types import Float64, Int64, UnixTimestamp
from sources import cardio_daily, lab_results, member_daily

daily_activity = FeatureView(
    name="daily_activity",
    entities=[member],
    ttl=timedelta(days=2),
    source=member_daily,
    schema=[
        Field(name="steps", dtype=Int64),
        Field(name="active_minutes", dtype=Int64),
        Field(name="wear_minutes", dtype=Int64, description="minutes with heart-rate data"),
    ],
    description="the last complete UTC day's activity",
)

sleep = FeatureView(
    name="sleep",
    entities=[member],
    ttl=timedelta(days=2),
    source=member_daily,
    schema=[
        Field(name="sleep_minutes", dtype=Int64),
        Field(name="sleep_efficiency", dtype=Float64, description="0..1"),
    ],
    description="the last complete UTC day's sleep",
)

cardio = FeatureView(
    name="cardio",
    entities=[member],
    ttl=timedelta(days=7),
    source=cardio_daily,
    schema=[
        Field(name="resting_hr", dtype=Float64),
        Field(name="hrv_ms", dtype=Float64),
        Field(name="resting_hr_7d", dtype=Float64, description="mean over the last 7 days"),
        Field(name="resting_hr_28d", dtype=Float64, description="mean over the last 28 days"),
        Field(name="hrv_ms_7d", dtype=Float64),
        Field(name="hrv_ms_28d", dtype=Float64),
    ],
    description="resting heart rate and HRV with 7- and 28-day baselines",
)

latest_labs = FeatureView(
    name="latest_labs",
    entities=[member],
    ttl=timedelta(days=400),
    source=lab_results,
    schema=[
        Field(name="hba1c", dtype=Float64),
        Field(name="hba1c_at", dtype=UnixTimestamp),
        Field(name="ldl", dtype=Float64),
        Field(name="ldl_at", dtype=UnixTimestamp),
        Field(name="hscrp", dtype=Float64),
        Field(name="hscrp_at", dtype=UnixTimestamp),
        Field(name="fasting_glucose", dtype=Float64),
        Field(name="fasting_glucose_at", dtype=UnixTimestamp),
    ],
    description="HbA1c, LDL, hs-CRP and fasting glucose: the latest of each with its time",
)
