"""The coach app in Debian's Chromium, every request beyond this machine blocked: an
unauthenticated visit goes to the Hub's login; a coach logs in, lands in the app, sees
exactly their members worst first, opens a member page, zooms a timeline from 90 days to
minutes, acknowledges an alert; another coach's member by URL is refused (and audited);
a withdrawal of consent shows as withheld on the next load; a coach gets no notebook
server. Screenshots are kept in test-artefacts/coach-app/ (or $REJUVE_TEST_ARTEFACTS)."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from backend.governance import consent
from backend.identity import hub_auth
from backend.runtime import Runtime
from tests.browser import launch, local_only
from tests.coach_app.data import coached_members, detect_alerts
from tests.seed import wait_rolled_up

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

REPO = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("REJUVE_TEST_ARTEFACTS") or REPO / "test-artefacts") / "coach-app"
APP = "/services/coach/"


@dataclass
class Coaching:
    coach: str
    other_coach: str
    password: str
    members: list[uuid.UUID]  # the coach's; the first has an episode (alerts)
    other_member: uuid.UUID  # the other coach's


@pytest.fixture(scope="module")
def coaching(ctx: Runtime) -> Iterator[Coaching]:
    tag = secrets.token_hex(3)
    coach, other = f"cb-{tag}", f"cb2-{tag}"
    password = f"coach pass {tag}"
    for name in (coach, other):
        hub_auth.add_user(ctx.hub.user_store, name, password, ["coach"], rounds=4)
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    end += dt.timedelta(hours=1)
    mine = coached_members(ctx, coach, 3, days=35, end=end, episodes=1)
    theirs = coached_members(ctx, other, 1, days=35, end=end)
    wait_rolled_up(ctx, [*mine, *theirs], timeout=300)
    assert detect_alerts(ctx, mine) > 0
    try:
        yield Coaching(coach, other, password, mine, theirs[0])
    finally:
        for name in (coach, other):
            hub_auth.remove_user(ctx.hub.user_store, name)


@dataclass
class Session:
    browser: Browser
    context: BrowserContext
    page: Page
    blocked: list[str]


@pytest.fixture(scope="module")
def chromium(ctx: Runtime) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = launch(pw, ctx.layout.ca_cert)
        try:
            yield browser
        finally:
            browser.close()


def _session(browser: Browser) -> Session:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    blocked = local_only(context)
    page = context.new_page()
    page.set_default_timeout(60_000)
    return Session(browser, context, page, blocked)


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=ARTEFACTS / f"{name}.png", full_page=True)


def _log_in(ctx: Runtime, page: Page, name: str, password: str) -> None:
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.click("#login_submit")


@pytest.fixture(scope="module")
def signed_in(ctx: Runtime, chromium: Browser, coaching: Coaching) -> Iterator[Session]:
    """The coach, logged in through the Hub's own login page (no `next`): the Hub sends a
    coach to the coach app."""
    s = _session(chromium)
    s.page.goto(f"{ctx.hub.url}/hub/login")
    _log_in(ctx, s.page, coaching.coach, coaching.password)
    s.page.wait_for_url(f"**{APP}")
    s.page.wait_for_selector("tr.triage-row")
    try:
        yield s
    finally:
        assert s.blocked == [], f"the app asked for something beyond this machine: {s.blocked}"
        s.context.close()


def test_an_unauthenticated_visit_goes_to_the_hub_login(ctx: Runtime, chromium: Browser) -> None:
    s = _session(chromium)
    try:
        s.page.goto(f"{ctx.hub.url}{APP}member?member={uuid.uuid4()}")
        s.page.wait_for_selector("#username_input")
        assert urlsplit(s.page.url).path == "/hub/login"
        _shot(s.page, "01-unauthenticated-hub-login")
        assert s.blocked == []
    finally:
        s.context.close()


def test_the_coach_sees_exactly_their_members_worst_first(
    ctx: Runtime, signed_in: Session, coaching: Coaching
) -> None:
    page = signed_in.page
    page.goto(f"{ctx.hub.url}{APP}")
    rows = page.locator("tr.triage-row")
    rows.first.wait_for()
    shown = [rows.nth(i).get_attribute("data-member") or "" for i in range(rows.count())]
    assert sorted(shown) == sorted(str(m) for m in coaching.members)
    # The member with the episode has open alerts and flags: first.
    assert shown[0] == str(coaching.members[0])
    assert page.locator("tr.triage-row").first.locator("li.flag").count() > 0
    assert page.get_by_text(f"signed in as {coaching.coach}").count() == 1
    _shot(page, "02-triage")


def test_member_page_zooms_from_90_days_to_minutes_and_acknowledges(
    ctx: Runtime, signed_in: Session, coaching: Coaching
) -> None:
    page = signed_in.page
    page.goto(f"{ctx.hub.url}{APP}")
    page.locator("a.member-link").first.click()
    page.wait_for_url(f"**{APP}member?member={coaching.members[0]}")
    page.get_by_text("resolution: daily").wait_for()
    # Four charts drawn (Bokeh canvases), alerts with their evidence, consent, labs.
    assert page.locator("canvas").count() >= 4
    page.locator("table.evidence").first.wait_for()  # alerts fill in once the page shows
    page.locator("table.labs, p:text('No lab results')").first.wait_for()
    _shot(page, "03-member-90-days")
    # The mouse wheel over a chart zooms in; once the range is under ten days the page
    # asks for hourly buckets.
    chart = page.locator("canvas").first.bounding_box()
    assert chart is not None
    page.mouse.move(chart["x"] + chart["width"] * 0.95, chart["y"] + chart["height"] / 2)
    for _ in range(4):
        page.mouse.wheel(0, -300)
    page.locator(".resolution[data-bucket='hour']").wait_for()
    page.get_by_role("button", name="7 days", exact=True).click()
    page.get_by_text("resolution: hourly").wait_for()
    page.get_by_role("button", name="1 day", exact=True).click()
    page.get_by_text("resolution: minute (raw)").wait_for()
    _shot(page, "04-member-zoomed-1-day")
    page.get_by_role("button", name="1 hour", exact=True).click()
    page.get_by_text("resolution: minute (raw)").wait_for()

    open_before = page.locator(".alert-card.alert-open").count()
    assert open_before > 0
    page.get_by_role("button", name="Acknowledge").first.click()
    page.locator(".alert-card.alert-acknowledged").first.wait_for()
    assert page.locator(".alert-card.alert-open").count() == open_before - 1
    _shot(page, "05-alert-acknowledged")
    with ctx.db.connect("backend") as conn:
        row = conn.execute(
            "select count(*) from governance.audit_log where actor = %s"
            " and action = 'alerts.acknowledge' and status = 200",
            (coaching.coach,),
        ).fetchone()
    assert row is not None and row[0] == 1


def test_another_coachs_member_by_url_is_refused(
    ctx: Runtime, signed_in: Session, coaching: Coaching
) -> None:
    page = signed_in.page
    page.goto(f"{ctx.hub.url}{APP}member?member={coaching.other_member}")
    page.get_by_text("No such member among yours").wait_for()
    assert page.locator("canvas").count() == 0
    _shot(page, "06-other-coachs-member-refused")
    with ctx.db.connect("backend") as conn:
        refusals = conn.execute(
            "select count(*) from governance.audit_log where actor = %s and status = 404"
            " and resource like %s",
            (coaching.coach, f"%{coaching.other_member}%"),
        ).fetchone()
    assert refusals is not None and refusals[0] >= 1


def test_a_withdrawal_shows_as_withheld_on_the_next_load(
    ctx: Runtime, signed_in: Session, coaching: Coaching
) -> None:
    member = coaching.members[2]
    with ctx.db.connect("backend") as conn:
        consent.record(
            conn,
            member=member,
            purpose="coaching",
            category="wearables",
            granted=False,
            consent_version="v1",
            recorded_by="test",
        )
    page = signed_in.page
    page.goto(f"{ctx.hub.url}{APP}member?member={member}")
    page.get_by_text("resolution: daily").wait_for()
    withheld = page.locator("tr.consent-withheld[data-category='wearables']")
    assert "withheld by the member's choice" in (withheld.text_content() or "")
    # The empty heart-rate chart says why it is empty.
    note = page.locator("p.withheld")
    assert "Heart rate" in (note.text_content() or "")
    assert "wearables" in (note.text_content() or "")
    _shot(page, "07-consent-withheld")
    page.goto(f"{ctx.hub.url}{APP}")
    row = page.locator(f"tr.triage-row[data-member='{member}']")
    assert "wearables" in (row.locator(".withheld").text_content() or "")


def test_a_coach_gets_no_notebook_server(
    ctx: Runtime, signed_in: Session, coaching: Coaching
) -> None:
    page = signed_in.page
    answer = page.goto(f"{ctx.hub.url}/hub/spawn")
    _shot(page, "08-no-notebook-for-coaches")
    assert answer is not None and answer.status == 403
    assert "coach app" in page.content()
    page.goto(f"{ctx.hub.url}/hub/home")
    services = page.locator("a.dropdown-item", has_text="coach")
    assert services.count() == 1
    assert services.get_attribute("href") == APP


def test_only_coaches_may_use_the_app(ctx: Runtime, chromium: Browser) -> None:
    """A researcher is refused by the Hub (the app's OAuth scope is the coach group's) and
    is shown no link to it; they keep their notebook as before."""
    name, password = f"cr-{secrets.token_hex(3)}", f"researcher pass {secrets.token_hex(3)}"
    hub_auth.add_user(ctx.hub.user_store, name, password, ["researcher"], rounds=4)
    s = _session(chromium)
    try:
        s.page.goto(f"{ctx.hub.url}{APP}")
        _log_in(ctx, s.page, name, password)
        s.page.wait_for_load_state()
        assert s.page.locator("tr.triage-row").count() == 0
        _shot(s.page, "09-researcher-refused")
        assert "do not have permission to access JupyterHub service coach" in s.page.content()
        s.page.goto(f"{ctx.hub.url}/hub/home")
        assert s.page.locator("a.dropdown-item", has_text="coach").count() == 0
    finally:
        s.context.close()
        hub_auth.remove_user(ctx.hub.user_store, name)


def test_logging_out_ends_the_hub_session_too(
    ctx: Runtime, chromium: Browser, coaching: Coaching
) -> None:
    s = _session(chromium)
    try:
        s.page.goto(f"{ctx.hub.url}{APP}")
        _log_in(ctx, s.page, coaching.other_coach, coaching.password)
        s.page.wait_for_selector("tr.triage-row")
        s.page.get_by_role("link", name="log out").click()
        s.page.wait_for_url("**/hub/login**")
        s.page.goto(f"{ctx.hub.url}{APP}")
        s.page.wait_for_selector("#username_input")  # asked to log in again
        assert s.blocked == []
    finally:
        s.context.close()
