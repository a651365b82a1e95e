"""Logging in to the Prefect UI in a real browser (Debian's Chromium), typing exactly what
`rejuve up` / `rejuve status` print: the deployments page shows, with no "Authentication
failed"."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from backend.stack.context import StackContext
from tests.browser import launch

REJUVE = str(Path(sys.executable).parent / "rejuve")


def _what_to_type() -> str:
    out = subprocess.run(
        [REJUVE, "status"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    m = re.search(r"Prefect UI \S+: log in by typing (\S+) into its one field", out)
    assert m, f"`rejuve status` does not say how to log in to the Prefect UI:\n{out}"
    return m.group(1)


def test_prefect_ui_login_as_printed(ctx: StackContext) -> None:
    from playwright.sync_api import sync_playwright

    typed = _what_to_type()
    assert typed == ctx.prefect.auth_string
    with sync_playwright() as pw:
        browser = launch(pw, ctx.layout.ca_cert, ctx.layout.server_cert)
        try:
            page = browser.new_page()
            page.goto(f"{ctx.prefect.ui_url}/deployments", timeout=120_000)
            field = page.locator("input").first
            field.wait_for(timeout=120_000)
            field.fill(typed)
            field.press("Enter")
            page.get_by_text("drop-folder").first.wait_for(timeout=120_000)
            assert "/login" not in page.url
            page.goto(f"{ctx.prefect.ui_url}/deployments", timeout=120_000)
            page.get_by_text("drop-folder").first.wait_for(timeout=120_000)
            assert page.get_by_text("Authentication failed").count() == 0
        finally:
            browser.close()


def test_a_wrong_login_is_refused(ctx: StackContext) -> None:
    """The page is not open to anyone: the shared secret is what lets a person in."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw, ctx.layout.ca_cert, ctx.layout.server_cert)
        try:
            page = browser.new_page()
            page.goto(f"{ctx.prefect.ui_url}/deployments", timeout=120_000)
            field = page.locator("input").first
            field.wait_for(timeout=120_000)
            field.fill("rejuve:not-the-password")
            field.press("Enter")
            page.get_by_text("Authentication failed").first.wait_for(timeout=30_000)
            assert page.get_by_text("drop-folder").count() == 0
        finally:
            browser.close()
