"""Members with wearable data for the coach app's tests and benchmark, written the way the
refiner writes (processed zone, rollup keys queued in the same transaction): minute-level
heart rate, nightly HRV and sleep, hourly steps; plus coaches and their assignments."""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from collections.abc import Iterable, Iterator

import psycopg

from backend.governance import assignments, consent
from backend.runtime import Runtime
from tests.hub_people import add_member

Row = tuple[uuid.UUID, dt.datetime, str, float, str, dt.datetime | None, str | None]


def wearable_rows(
    member: uuid.UUID,
    end: dt.datetime,
    days: int,
    seed: int = 0,
    hr_every: int = 1,
    episode_days: int = 0,
) -> Iterator[Row]:
    """`days` days up to `end` (an hour): heart rate every `hr_every` minutes (diurnal,
    with noise), steps per hour by day, resting heart rate per morning, HRV and a sleep
    episode per night. The last `episode_days` days are an episode (illness, overtraining):
    resting heart rate up 15/min, HRV down 40 %, nights of about four hours."""
    rng = random.Random(f"{member}-{seed}")  # noqa: S311  (test data, not secrets)
    episode_from = end - dt.timedelta(days=episode_days) if episode_days else end
    start = end - dt.timedelta(days=days)
    rest = rng.uniform(52, 70)
    t = start
    step = dt.timedelta(minutes=hr_every)
    while t < end:
        hour = t.hour + t.minute / 60
        awake = 7 <= hour < 23
        hr = rest + (18 if awake else 0) + 8 * math.sin(hour / 24 * 2 * math.pi) + rng.gauss(0, 4)
        yield (member, t, "8867-4", round(max(35.0, hr), 1), "/min", None, None)
        t += step
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        for h in range(7, 23):
            at = day + dt.timedelta(hours=h)
            if start <= at < end:
                steps = max(0.0, rng.gauss(450, 250))
                yield (
                    member,
                    at,
                    "55423-8",
                    round(steps),
                    "{steps}",
                    at + dt.timedelta(hours=1),
                    None,
                )
        ill = day >= episode_from - dt.timedelta(days=1)
        morning = day + dt.timedelta(hours=6)
        if start <= morning < end:
            resting = rest + rng.gauss(0, 1.5) + (15 if morning >= episode_from else 0)
            yield (member, morning, "40443-4", round(resting, 1), "/min", None, None)
        night = day + dt.timedelta(hours=23)
        if start <= night and night + dt.timedelta(hours=7) <= end:
            minutes = rng.uniform(200, 260) if ill else rng.uniform(400, 480)
            yield (
                member,
                night,
                "x-rejuve:sleep-stage",
                round(minutes),
                "min",
                night + dt.timedelta(minutes=minutes),
                "asleepCore",
            )
            yield (
                member,
                night + dt.timedelta(hours=3),
                "80404-7",
                round(rng.gauss(48, 4) * (0.6 if ill else 1.0), 1),
                "ms",
                None,
                None,
            )
        day += dt.timedelta(days=1)


def write(conn: psycopg.Connection, rows: Iterable[Row], source: str = "coach-test") -> int:
    """COPY the rows in and queue their rollup keys, in one transaction."""
    keys: set[tuple[uuid.UUID, str, dt.datetime]] = set()
    n = 0
    with conn.cursor() as cur:
        with cur.copy(
            "copy processed.observations (member_id, observed_at, code, value, unit, ended_at,"
            " qualifier, source, raw_record_id, raw_received_at) from stdin"
        ) as copy:
            now = dt.datetime.now(dt.UTC)
            for m, at, code, value, unit, ended, qualifier in rows:
                copy.write_row(
                    (m, at, code, value, unit, ended, qualifier, source, uuid.uuid4(), now)
                )
                keys.add((m, code, at.replace(minute=0, second=0, microsecond=0)))
                n += 1
        cur.executemany(
            "insert into analytics.rollup_dirty (member_id, code, hour, cause)"
            " values (%s, %s, %s, 'refine')",
            sorted(keys),
        )
    conn.commit()
    return n


def coached_members(
    ctx: Runtime,
    coach: str,
    count: int,
    *,
    days: int,
    end: dt.datetime,
    hr_every: int = 5,
    episodes: int = 0,
    source: str = "coach-test",
) -> list[uuid.UUID]:
    """`count` new members assigned to `coach`, consenting to coaching (wearables, labs,
    sleep, activity), with `days` of data each; the first `episodes` of them end in a
    three-day episode."""
    members = [add_member(ctx) for _ in range(count)]
    with ctx.db.connect("owner") as conn:
        for i, m in enumerate(members):
            episode = 3 if i < episodes else 0
            write(conn, wearable_rows(m, end, days, i, hr_every, episode_days=episode), source)
    with ctx.db.connect("backend") as conn:
        consent.grant_all(
            conn,
            members,
            "coaching",
            ["wearables", "labs", "sleep", "activity", "vitals"],
            consent_version="v1",
            recorded_by="test",
        )
        for m in members:
            assignments.assign(conn, coach, m)
    return members


def detect_alerts(ctx: Runtime, members: list[uuid.UUID], days: int = 7) -> int:
    """Run the alert detection (what the `detect-alerts` flow runs) over the last days."""
    from backend.coaching import alerts

    today = dt.datetime.now(dt.UTC).date()
    with ctx.db.connect("owner") as conn:
        done = alerts.detect(conn, today - dt.timedelta(days=days), today, members)
    return done.inserted
