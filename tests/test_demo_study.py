"""The demo's governed part: study, consent, researcher account and the first question,
through the Hub and the backend; re-running it changes nothing and re-grants nobody."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from pathlib import Path

from backend.demo import notebook as demo_notebook
from backend.demo import study as demo_study
from backend.governance import consent
from backend.governance import members as registry
from backend.stack.context import StackContext
from tests import seed


def test_the_researchers_first_question_and_a_second_run(ctx: StackContext, tmp_path: Path) -> None:
    # A day of our own (the demo's study outlives a test on a developer's stack).
    day = dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=secrets.randbelow(360))
    people = [(uuid.uuid4(), "female" if n < 12 else "male") for n in range(24)]
    with ctx.db.connect("owner") as conn:
        seed.observations(
            conn,
            [
                (m, day + dt.timedelta(hours=h), "8867-4", 60.0 + h, "/min")
                for m, _ in people
                for h in range(2)
            ],
        )
    with ctx.db.connect("backend") as conn:
        for m, sex in people:
            registry.enrol(conn, registry.Enrolment(m, ctx.settings.region, 1980, sex))
        # One member withdrew from the study before: the demo must not re-grant them.
        consent.record(
            conn,
            member=people[0][0],
            purpose=consent.study_purpose(demo_study.STUDY),
            category="wearables",
            granted=False,
            consent_version="v1",
            recorded_by=str(people[0][0]),
        )
    members = [m for m, _ in people]
    password = demo_study.prepare(ctx, members)
    assert demo_study.prepare(ctx, members) == password  # the same account, kept
    answer = demo_study.first_question(ctx, password, day, day + dt.timedelta(days=1))
    cells = {(r.period, r.sex): r.count for r in answer.itertuples()}
    assert cells[(day.date().isoformat(), "female")] == 11  # the one who withdrew is out
    assert cells[(day.date().isoformat(), "male")] == 12
    assert cells[("Total", "Total")] == 23
    assert demo_study.as_table(answer).row_count == len(answer)
    with ctx.db.connect("backend") as conn:
        grants = conn.execute(
            "select count(*) from governance.consent_events"
            " where member_id = any(%s) and purpose = %s",
            (members, consent.study_purpose(demo_study.STUDY)),
        ).fetchone()
    # 23 members x 2 categories granted once, plus the withdrawal: nothing twice.
    assert grants == (23 * 2 + 1,)
    assert answer.attrs["threshold"] == 10
    # The demo's last step: notebook 01 run as the researcher, kept as HTML with its plots.
    html = demo_notebook.first_notebook_html(
        ctx, password, day, day + dt.timedelta(days=1), tmp_path / "01.html"
    )
    text = html.read_text()
    assert html.stat().st_mode & 0o077 == 0  # pseudonymised data: root only
    assert "Bokeh" in text and "Mean heart rate by day" in text
    assert "cdn.bokeh.org" not in text and "cdn.holoviz.org" not in text
    # (a failing cell would have raised: nbclient stops at the first error)
