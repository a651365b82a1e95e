"""A new researcher logs in to JupyterHub in Debian's Chromium with every request beyond
this machine blocked, lands in notebook 01, runs it, and sees the plots: Bokeh canvases
in the output area (Panel's JavaScript came inline, not from a CDN). The screenshot is
kept as an artefact (test-artefacts/, or $REJUVE_TEST_ARTEFACTS)."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from backend.identity import hub_auth
from backend.runtime import Runtime
from tests.browser import launch, local_only
from tests.workbench import studies
from tests.workbench.notebooks import REPO

ARTEFACTS = Path(os.environ.get("REJUVE_TEST_ARTEFACTS") or REPO / "test-artefacts")
CANVAS = ".jp-OutputArea-output canvas"


def test_notebook_01_runs_in_jupyterlab_and_shows_its_plots(ctx: Runtime) -> None:
    from playwright.sync_api import sync_playwright

    name, password = f"nbweb-{secrets.token_hex(3)}", f"browser pass {secrets.token_hex(3)}"
    hub_auth.add_user(ctx.hub.user_store, name, password, ["researcher"], rounds=4)
    studies.first_cohort(ctx, name)  # the notebook's default window covers it
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTEFACTS / "notebook-01-jupyterlab.png"
    shot.unlink(missing_ok=True)
    try:
        with sync_playwright() as pw:
            browser = launch(pw, ctx.layout.ca_cert)
            try:
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                blocked = local_only(context)
                page = context.new_page()
                page.goto(f"{ctx.hub.url}/hub/login")
                page.fill("#username_input", name)
                page.fill("#password_input", password)
                page.click("#login_submit")
                try:
                    page.wait_for_url(
                        re.compile(rf"/user/{name}/lab/tree/notebooks/01_first_cohort\.ipynb"),
                        timeout=90_000,
                    )
                    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
                    page.wait_for_selector(
                        ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000
                    )
                    # JupyterLab reconnects to a new kernel once just after it says idle; a
                    # request sent in between loses its reply and Run All stalls on cell 1.
                    page.wait_for_timeout(8_000)
                    page.locator(".jp-NotebookPanel .jp-Cell").first.click()
                    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
                    page.locator(
                        ".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")
                    ).click()
                    # The first plot: a Bokeh canvas in a cell's output area.
                    page.wait_for_selector(CANVAS, timeout=120_000)
                    # The last cell (the summary) has run: the whole notebook did.
                    page.wait_for_function(
                        "() => [...document.querySelectorAll('.jp-OutputArea-output')]"
                        ".some(e => e.textContent.includes('extract_rows'))",
                        timeout=120_000,
                    )
                    errors = page.locator(".jp-OutputArea-output[data-mime-type*='error']").count()
                    canvases = page.locator(CANVAS).count()
                    # Back up to the first plot (cells out of view are not in the page).
                    page.evaluate(
                        "document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer')"
                        ".scrollTop = 0"
                    )
                    plot = page.locator(".jp-Cell", has_text="cohort_plot(daily")
                    plot.scroll_into_view_if_needed()
                    page.wait_for_selector(CANVAS, timeout=30_000)
                    canvases = max(canvases, page.locator(CANVAS).count())
                    page.wait_for_timeout(1_500)  # let Bokeh finish its layout before the shot
                    page.screenshot(path=str(shot))
                    # The sub-cohort's plot: all days withheld, grey bands and their reasons.
                    gaps = page.locator(".jp-Cell", has_text="cohort_plot(raised")
                    gaps.scroll_into_view_if_needed()
                    page.wait_for_timeout(1_000)
                    page.screenshot(path=str(ARTEFACTS / "notebook-01-withheld.png"))
                finally:  # stop the server this test started, as a person would
                    if not shot.exists():  # what the page showed when it went wrong
                        page.screenshot(path=str(ARTEFACTS / "notebook-01-failed.png"))
                    page.goto(f"{ctx.hub.url}/hub/home")
                    page.locator("#stop").click()
                    page.wait_for_selector("#start", timeout=60_000)
            finally:
                browser.close()
    finally:
        hub_auth.remove_user(ctx.hub.user_store, name)
    assert errors == 0
    assert canvases >= 2  # the day plot and the sub-cohort's (all gaps) at least
    assert shot.stat().st_size > 10_000
    assert blocked == []
