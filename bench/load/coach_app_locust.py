"""Locust users for the coach app: each one a coach's browser session, logged in through
the Hub (form login, then the app's OAuth round trip), loading the triage list and member
pages (each load builds the page server-side: the app's calls to the backend with the
coach's token), and zooming (a zoom is one timeline request to the backend at the new
range's resolution: what the app asks for, sent with the coach's own Hub token).

Run by bench/coach_load.py (locust must run in a process of its own: FACTS.md), with
COACH_LOAD_* in the environment."""

from __future__ import annotations

import datetime as dt
import os
import random
import re

from locust import HttpUser, between, task

HUB = os.environ["COACH_LOAD_HUB"]
BACKEND = os.environ["COACH_LOAD_BACKEND"]
CA = os.environ["COACH_LOAD_CA"]
COACH = os.environ["COACH_LOAD_COACH"]
PASSWORD = os.environ["COACH_LOAD_PASSWORD"]
TOKEN = os.environ["COACH_LOAD_TOKEN"]  # the coach's Hub API token, for the zoom requests
MEMBERS = os.environ["COACH_LOAD_MEMBERS"].split(",")
APP = "/services/coach/"
# Which member and which zoom: load, not secrets.
_rng = random.Random()  # noqa: S311
SPANS = [dt.timedelta(days=7), dt.timedelta(days=1), dt.timedelta(hours=1)]


class Coach(HttpUser):
    host = HUB
    # A coach reads what they opened before the next click (COACH_LOAD_THINK: min,max s).
    wait_time = between(*(float(x) for x in os.environ.get("COACH_LOAD_THINK", "2,8").split(",")))

    def on_start(self) -> None:
        self.client.verify = CA
        page = self.client.get(APP, name="login: app -> Hub login form")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        assert xsrf, "no Hub login form"
        done = self.client.post(
            page.url,
            data={"username": COACH, "password": PASSWORD, "_xsrf": xsrf.group(1)},
            name="login: Hub form -> OAuth -> app",
        )
        assert "triage-row" in done.text or "Your members" in done.text or done.ok

    @task(3)
    def triage(self) -> None:
        self.client.get(APP, name="triage page")

    @task(3)
    def member_page(self) -> None:
        self.client.get(f"{APP}member?member={_rng.choice(MEMBERS)}", name="member page")

    @task(5)
    def zoom(self) -> None:
        span = _rng.choice(SPANS)
        end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        bucket = {7: "hour"}.get(span.days)
        params: dict[str, object] = {
            "start": (end - span).isoformat(),
            "end": end.isoformat(),
            "codes": ["8867-4", "80404-7", "55423-8", "x-rejuve:sleep-stage"],
            "limit": 10000,
        }
        if bucket:
            params["bucket"] = bucket
        self.client.get(
            f"{BACKEND}/v1/members/{_rng.choice(MEMBERS)}/timeline",
            params=params,
            headers={"Authorization": f"token {TOKEN}"},
            name=f"zoom: timeline {span}",
        )
