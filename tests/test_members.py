"""The member registry: enrolment with demographics from the CLI, and demographic cohort
criteria over HTTP as a researcher logged in to the Hub."""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
import sys
import uuid

from backend.governance import members as registry
from backend.stack.context import StackContext
from tests import seed
from tests.hub_people import Backend, hub_people

REJUVE = [sys.executable, "-m", "backend.cli.main"]
T0 = dt.datetime(2026, 10, 5, tzinfo=dt.UTC)  # a Monday


def _rejuve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*REJUVE, *args], capture_output=True, text=True, timeout=120)


def test_enrol_and_update_from_the_cli(ctx: StackContext) -> None:
    member = uuid.uuid4()
    first = _rejuve("members", "add", str(member), "--birth-year", "1971", "--sex", "female")
    again = _rejuve("members", "add", str(member), "--birth-year", "1972", "--sex", "other")
    assert (first.returncode, again.returncode) == (0, 0), first.stderr + again.stderr
    assert f"enrolled {member}" in first.stdout and f"updated {member}" in again.stdout
    with ctx.db.connect("owner") as conn:
        row = conn.execute(
            "select home_region, birth_year, sex from governance.members where member_id = %s",
            (member,),
        ).fetchone()
    assert row == (ctx.settings.region, 1972, "other")


def test_bad_demographics_are_one_clear_line(ctx: StackContext) -> None:
    bad_sex = _rejuve("members", "add", "--sex", "f")
    bad_year = _rejuve("members", "add", "--birth-year", "1850")
    bad_id = _rejuve("members", "add", "not-a-uuid")
    for done, words in (
        (bad_sex, "sex must be one of female, male, other, unknown"),
        (bad_year, "birth year must be between 1900"),
        (bad_id, "not a member id"),
    ):
        assert done.returncode == 2  # a usage error, as for every command
        assert words in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_cohort_by_age_band_for_women_over_http(ctx: StackContext) -> None:
    study = f"demo-{secrets.token_hex(3)}"
    # 12 women in their forties, 12 in their sixties, 12 men: only women are asked for.
    people = [(uuid.uuid4(), "female", 1980) for _ in range(12)]
    people += [(uuid.uuid4(), "female", 1960) for _ in range(12)]
    people += [(uuid.uuid4(), "male", 1980) for _ in range(12)]
    with hub_people(ctx, {"rita": "researcher"}) as (names, tokens):
        with ctx.db.connect("owner") as conn:
            seed.study(conn, study, [names["rita"]])
            seed.observations(
                conn,
                [
                    (m, T0 + dt.timedelta(hours=h), "8867-4", 70.0, "/min")
                    for m, _, _ in people
                    for h in range(3)
                ],
            )
        with ctx.db.connect("backend") as conn:
            for m, sex, year in people:
                registry.enrol(conn, registry.Enrolment(m, ctx.settings.region, year, sex))
            seed.consent_all(conn, [m for m, _, _ in people], f"study:{study}")
        # a mean over whole days is answered from the daily rollups (about a second behind)
        seed.wait_rolled_up(ctx, [m for m, _, _ in people])
        api = Backend(ctx)
        try:
            r = api.call(
                "POST",
                f"/v1/studies/{study}/cohort-stats",
                tokens["rita"],
                json={
                    "code": "8867-4",
                    "start": T0.isoformat(),
                    "end": (T0 + dt.timedelta(days=7)).isoformat(),
                    "sex": ["female"],
                    "by": ["age_band"],
                    "stats": ["mean"],
                },
            )
        finally:
            api.close()
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["dims"] == ["period", "age_band"]
    counts = {tuple(row["key"]): row["values"]["count"] for row in answer["rows"]}
    assert counts[("2026-10-05", "40-49")] == 12
    assert counts[("2026-10-05", "60-69")] == 12
    assert counts[("2026-10-05", "Total")] == 24  # the men are not in it
