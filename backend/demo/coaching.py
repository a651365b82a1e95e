"""The demo's coaching part: a coach with assigned members whose last five weeks of data
come from the synthetic cohort with injected episodes (raised resting heart rate, HRV
drop, short nights), alerts detected over them, and the coach app's address.

The coaching cohort is its own small cohort ending today, so the triage list is about
today; the main demo cohort (fixed dates) stays the researchers'."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from backend.coaching import alerts
from backend.governance import assignments, consent
from backend.governance.members import Enrolment, enrol
from backend.identity import hub_auth
from backend.stack import secrets_store
from backend.stack.context import StackContext
from backend.synth.cohort import CohortSpec, write_cohort
from backend.synth.manifest import Manifest

COACH = "demo-coach"
# The entry of the stack's secrets file that holds the demo coach's password.
KEPT_AS = "hub_demo_coach"
# Long enough for a 28-day baseline before an episode (the generator's minimum).
DAYS = 35
MEMBERS = 8
CATEGORIES = ["wearables", "labs", "vitals", "sleep", "activity"]


def spec(today: dt.date) -> CohortSpec:
    start = dt.datetime.combine(today - dt.timedelta(days=DAYS - 1), dt.time(), dt.UTC)
    return CohortSpec(
        members=MEMBERS,
        days=DAYS,
        seed=1010,
        start=start,
        episode_share=0.5,
        # Most watches sample every 5 minutes: a smaller demo, still minute-level for some.
        five_minute_hr_share=0.75,
        apple_exports=0,
    )


def cohort(ctx: StackContext, today: dt.date) -> tuple[Path, Manifest]:
    s = spec(today)
    root = ctx.layout.private_dir("demo") / f"coaching-{s.members}x{s.days}-{today}"
    if not (root / "manifest.json").exists():
        write_cohort(s, root)
    return root, Manifest.load(root / "manifest.json")


def enrol_cohort(ctx: StackContext, manifest: Manifest) -> list[uuid.UUID]:
    with ctx.db.connect("backend") as conn:
        for m in manifest.members:
            enrol(conn, Enrolment(m.member_id, ctx.settings.region, m.birth_year, m.sex))
    return [m.member_id for m in manifest.members]


def prepare(ctx: StackContext, members: list[uuid.UUID]) -> None:
    """The coach's account (its password kept in the stack's secrets file), the assignments
    and the members' coaching consent (only for members never asked: one who withdrew
    stays withdrawn)."""
    with ctx.db.connect("backend") as conn:
        asked = {
            row[0]
            for row in conn.execute(
                "select distinct member_id from governance.consent_events"
                " where purpose = 'coaching' and member_id = any(%s)",
                (members,),
            )
        }
        consent.grant_all(
            conn,
            [m for m in members if m not in asked],
            "coaching",
            CATEGORIES,
            consent_version="demo-v1",
            recorded_by="demo",
        )
        for m in members:
            assignments.assign(conn, COACH, m)
    names = (*secrets_store.SECRET_NAMES, KEPT_AS)
    password = secrets_store.load_or_create(ctx.layout.secrets_file, names)[KEPT_AS]
    if hub_auth.lookup(ctx.hub.user_store, COACH) is None:
        hub_auth.add_user(ctx.hub.user_store, COACH, password, ["coach"])


def detect(ctx: StackContext, members: list[uuid.UUID], today: dt.date) -> alerts.Detected:
    """What the `detect-alerts` flow does every few minutes, over the whole cohort now."""
    with ctx.db.connect("refiner") as conn:
        return alerts.detect(conn, today - dt.timedelta(days=DAYS), today, members)


def wait_summarised(ctx: StackContext, members: list[uuid.UUID], timeout: float = 300) -> None:
    """Until the rollups service has built these members' daily summaries."""
    import time

    deadline = time.monotonic() + timeout
    with ctx.db.connect("refiner", autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "select count(*) from analytics.rollup_dirty where member_id = any(%s)",
                (members,),
            ).fetchone()
            if row and row[0] == 0:
                return
            time.sleep(0.5)


def where(ctx: StackContext, url: str) -> str:
    return (
        f"Coach app: [bold]{url}[/] (log in as {COACH}: password '{KEPT_AS}' in"
        f" {ctx.layout.secrets_file}; {MEMBERS} members assigned, some with injected"
        " episodes; more coaches: rejuve users add NAME --role coach, rejuve assignments add)"
    )
