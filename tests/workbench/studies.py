"""A study for the workbench's tests, put in place the way the platform's writers would:
consenting members with demographics, observations (for coverage and the extract that
gives the researcher the pseudonyms), member-day summaries in the analytics zone (as
the rollup worker writes them; filled directly as the owner role, as the contract for
issue 9 allows), and the study's access level set by an admin over the API."""

from __future__ import annotations

import datetime as dt
import math
import secrets
import uuid
from dataclasses import dataclass

from backend.governance import consent
from backend.identity import hub_auth
from backend.runtime import Runtime
from tests import seed
from tests.hub_people import Backend, hub_people, hub_token

# The training notebook's end; the data quality notebook looks at the week before it.
END = dt.datetime(2026, 10, 5, tzinfo=dt.UTC)
DAYS = 120  # member-day summaries before END
MEMBERS = 12


def resting_hr(n: int, day: int) -> float:
    """Member n's resting heart rate on day `day` (0 = first): a level of its own, a slow
    upward drift (so next week is not simply the past month's mean) and a weekly wobble."""
    return 55.0 + 2 * n + 0.12 * day + 1.5 * math.sin(2 * math.pi * day / 7 + n)


def wear_minutes(n: int, day: int) -> int:
    return 600 + 60 * ((n + day) % 13)


@dataclass(frozen=True)
class Study:
    study: str
    researcher: str
    password: str
    token: str
    members: list[uuid.UUID]
    birth_years: list[int]


def make(ctx: Runtime, level: str = "row-level") -> Study:
    tag = secrets.token_hex(3)
    researcher, password = f"wbres-{tag}", f"workbench pass {tag}"
    study = f"wb-{tag}"
    hub_auth.add_user(ctx.hub.user_store, researcher, password, ["researcher"], rounds=4)
    members = [uuid.uuid4() for _ in range(MEMBERS)]
    years = [1950 + 3 * n for n in range(MEMBERS)]
    first = (END - dt.timedelta(days=DAYS)).date()
    with ctx.db.connect("owner") as conn:
        seed.study(conn, study, [researcher])
        for n, m in enumerate(members):
            conn.execute(
                "insert into governance.members (member_id, home_region, birth_year, sex)"
                " values (%s, 'local', %s, %s)",
                (m, years[n], "female" if n % 2 else "male"),
            )
        week = [END - dt.timedelta(days=d) for d in range(7, 0, -1)]
        rows: list[seed.Row] = []
        for n, m in enumerate(members):
            rows += [(m, t + dt.timedelta(hours=9), "8867-4", 60.0 + n, "/min") for t in week]
            rows += [
                (m, t + dt.timedelta(hours=20), "55423-8", 5000.0 + n, "{steps}") for t in week[:4]
            ]
            if n < 4:  # too few for a cell: a gap in the coverage plot
                rows.append((m, week[0] + dt.timedelta(hours=7), "29463-7", 70.0 + n, "kg"))
        # The member-day summaries are written below as the rollups service would compute
        # them (a history too long to seed minute by minute): these observations queue no
        # rollup keys, or the service would rebuild the last week's summaries from them.
        seed.observations(conn, rows, queue=False)
        seed.daily_rollups(conn, members)
        with conn.cursor() as cur:
            cur.executemany(
                "insert into analytics.member_daily (member_id, day, event_ts, computed_at,"
                " resting_hr, hrv_ms, steps, active_minutes, sleep_minutes, sleep_efficiency,"
                " wear_minutes) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        m,
                        first + dt.timedelta(days=d),
                        dt.datetime.combine(first + dt.timedelta(days=d + 1), dt.time(), dt.UTC),
                        dt.datetime.combine(first + dt.timedelta(days=d + 1), dt.time(1), dt.UTC),
                        resting_hr(n, d),
                        40.0 + n + (d % 5),
                        6000 + 100 * n + 10 * d,
                        30 + (d % 20),
                        420 + (n * 7 + d) % 60,
                        0.85,
                        wear_minutes(n, d),
                    )
                    for n, m in enumerate(members)
                    for d in range(DAYS)
                ],
            )
    with ctx.db.connect("backend") as conn:
        # Every category: heart rate is `wearables`, steps `activity`, weight `vitals`.
        seed.consent_all(conn, members, consent.study_purpose(study), consent.CATEGORIES)
    set_level(ctx, study, level)
    return Study(study, researcher, password, hub_token(ctx, researcher, password), members, years)


def set_level(ctx: Runtime, study: str, level: str) -> None:
    """As an admin, over the API (PUT /v1/studies/{study}/access-level)."""
    backend = Backend(ctx)
    try:
        with hub_people(ctx, {"adm": "admin"}) as (_, tokens):
            r = backend.call(
                "PUT", f"/v1/studies/{study}/access-level", tokens["adm"], json={"level": level}
            )
            assert r.status_code in (200, 201), r.text
    finally:
        backend.close()


def remove(ctx: Runtime, s: Study) -> None:
    hub_auth.remove_user(ctx.hub.user_store, s.researcher)


FIRST_START, FIRST_END = "2026-11-02", "2026-11-05"


def first_cohort(ctx: Runtime, researcher: str) -> tuple[str, list[uuid.UUID]]:
    """The data notebook 01 expects (its window is FIRST_START..FIRST_END): 12 members'
    heart rate twice a day for three days, and an HbA1c each (six of them >= 6.5 %)."""
    t0 = dt.datetime.fromisoformat(FIRST_START).replace(tzinfo=dt.UTC)
    study = f"nb-{secrets.token_hex(3)}"
    members = [uuid.uuid4() for _ in range(12)]
    with ctx.db.connect("owner") as conn:
        seed.study(conn, study, [researcher])
        seed.observations(
            conn,
            [
                (m, t0 + dt.timedelta(days=d, hours=h), "8867-4", 58 + n + h, "/min")
                for n, m in enumerate(members)
                for d in range(3)
                for h in range(2)
            ]
            + [(m, t0, "4548-4", 7.1 if n % 2 else 5.4, "%") for n, m in enumerate(members)],
            source="Anna's Watch",  # a source name that carries a first name
        )
    with ctx.db.connect("backend") as conn:
        seed.consent_all(conn, members, f"study:{study}")
    return study, members
