"""One home for object-level rules, and consent decided once per request.

The member-or-coach and open-study rules live in `backend.query.row_rules` only (they
once existed three and two times); the coach timeline's plan evaluates consent, the
assignment and the member's own record once per statement (InitPlans), never once per
observation (a correlated SubPlan: 18 ms for a member-day in hourly buckets)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from backend.analytics import rollups
from backend.db.access import DatabaseAccess
from backend.governance import consent
from backend.query import row_rules
from backend.query import timeline as tl
from backend.query.viewer import Viewer

QUERY_DIR = Path(row_rules.__file__).parent
# Tables only a rule may consult to decide who sees what.
RULE_TABLES = ("coach_assignments", "study_researchers", "hub_user = %(viewer)s")
DAY = dt.datetime(2026, 1, 15, tzinfo=dt.UTC)


@pytest.mark.parametrize("needle", RULE_TABLES)
def test_the_rules_live_in_one_module(needle: str) -> None:
    holders = [
        p.name for p in sorted(QUERY_DIR.glob("*.py")) if needle in p.read_text(encoding="utf-8")
    ]
    assert holders == ["row_rules.py"]


@pytest.fixture(scope="module")
def day(migrated_db: DatabaseAccess) -> tuple[DatabaseAccess, uuid.UUID]:
    """A member assigned to coach carol, consenting to coaching, with a day of minute-level
    heart rate (1,440 observations)."""
    member = uuid.uuid4()
    with migrated_db.connect("owner") as conn:
        conn.execute(
            "insert into governance.members (member_id, home_region, hub_user)"
            " values (%s, 'eu', 'mia')",
            (member,),
        )
        conn.execute(
            "insert into governance.coach_assignments (coach, member_id) values ('carol', %s)",
            (member,),
        )
        conn.execute(
            "insert into processed.observations (member_id, observed_at, code, value, unit,"
            " source, raw_record_id, raw_received_at)"
            " select %s, %s + make_interval(mins => i), '8867-4', 60 + i %% 40, '/min', 't',"
            " gen_random_uuid(), now() from generate_series(0, 1439) i",
            (member, DAY),
        )
        conn.execute("analyze processed.observations")
        rollups.queue_all(conn, member)
        conn.commit()
        rollups.refresh_all(conn)
    with migrated_db.connect("backend") as conn:
        consent.record(
            conn,
            member=member,
            purpose="coaching",
            category="wearables",
            granted=True,
            consent_version="v1",
            recorded_by="test",
        )
    return migrated_db, member


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


@pytest.mark.parametrize("rolled", [False, True], ids=["observations", "rollups"])
@pytest.mark.parametrize(
    "viewer",
    [
        Viewer("carol", frozenset({"coach"}), "eu"),
        Viewer("mia", frozenset({"member"}), "eu"),
        Viewer("mia", frozenset({"member", "coach"}), "eu"),
    ],
    ids=["coach", "member", "both"],
)
def test_consent_is_decided_once_per_request_not_per_row(
    day: tuple[DatabaseAccess, uuid.UUID], viewer: Viewer, rolled: bool
) -> None:
    db, member = day
    params = {
        **row_rules.params(viewer, member=member),
        "start": DAY,
        "end": DAY + dt.timedelta(days=1),
        "limit": 1000,
        "want": None,
        "after": None,
        "after_code": None,
    }
    with db.connect("query") as conn:
        statement = tl.timeline_sql("hour", rollups=rolled).as_string(conn)
        (plan,) = conn.execute("explain (analyze, format json) " + statement, params).fetchone()  # type: ignore[misc]
        points = tl.timeline(
            conn, viewer, member, start=DAY, end=DAY + dt.timedelta(days=1), bucket="hour"
        )
    assert len(points) == 24 and sum(p.count for p in points) == 1440
    nodes = _nodes((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])
    per_row = [n for n in nodes if str(n.get("Subplan Name", "")).startswith("SubPlan")]
    assert per_row == [], "a rule is evaluated once per observation"
    assert all(
        n.get("Actual Loops", 1) == 1 for n in nodes if "InitPlan" in str(n.get("Subplan Name", ""))
    )
