"""Feature services: what a use needs, named once."""

from feast import FeatureService
from views import cardio, daily_activity, latest_labs, sleep

coaching_overview = FeatureService(
    name="coaching_overview",
    features=[daily_activity, sleep, cardio, latest_labs],
    description="a coach's glance at one member (online, through the backend)",
)

research_model = FeatureService(
    name="research_model",
    features=[
        daily_activity[["steps", "active_minutes"]],
        sleep,
        cardio[["resting_hr", "resting_hr_7d", "resting_hr_28d", "hrv_ms", "hrv_ms_28d"]],
    ],
    description="a study's model inputs (point-in-time training sets, through the backend)",
    tags={"entity": "study_subject"},
)
