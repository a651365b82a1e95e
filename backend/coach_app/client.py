"""The governed backend as the coach app calls it: over HTTPS, verified against our CA, with
the signed-in coach's own Hub token. Nothing here knows a database.

The backend decides what the coach may see; this client only turns its answers into
Python values and its refusals into exceptions a page can show."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

# Pages of the timeline a zoom may read before it gives up (10,000 points each).
_MAX_PAGES = 5


class BackendRefused(Exception):
    """The backend said no (or could not answer); `status` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class NotYours(BackendRefused):
    """404 from the backend: no such member, or not one of this coach's (it does not say
    which, and neither does the page)."""


@dataclass(frozen=True)
class Point:
    time: dt.datetime
    code: str
    value: float
    count: int
    min: float | None
    max: float | None


def tls_context(ca_file: Path | str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


class CoachApi:
    """One coach session's view of the backend (one per browser session)."""

    def __init__(
        self, base_url: str, token: str, tls: ssl.SSLContext, *, timeout: float = 30.0
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            verify=tls,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"},
        )

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, params: Any = None) -> Any:
        return _answer(self._http.get(path, params=params))

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return _answer(self._http.post(path, json=body))

    # -- routes ---------------------------------------------------------------------------

    def triage(self) -> dict[str, Any]:
        result: dict[str, Any] = self._get("/v1/coach/triage")
        return result

    def consent(self, member: str) -> dict[str, Any]:
        result: dict[str, Any] = self._get(f"/v1/members/{member}/consent")
        return result

    def alerts(self, member: str, status: str = "all") -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get(f"/v1/members/{member}/alerts", {"status": status})
        return result

    def decide(self, alert: str, decision: str, note: str | None = None) -> dict[str, Any]:
        """`decision` is `acknowledge` or `dismiss`."""
        if decision not in ("acknowledge", "dismiss"):
            raise ValueError(decision)
        result: dict[str, Any] = self._post(f"/v1/alerts/{alert}/{decision}", {"note": note})
        return result

    def labs(self, member: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get(f"/v1/members/{member}/labs")
        return result

    def daily(self, member: str, days: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get(f"/v1/members/{member}/daily", {"days": days})
        return result

    def timeline(
        self,
        member: str,
        start: dt.datetime,
        end: dt.datetime,
        codes: Sequence[str],
        bucket: str | None,
    ) -> list[Point]:
        """Every point in [start, end) of these codes, following the pages."""
        params: dict[str, Any] = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "codes": list(codes),
            "limit": 10_000,
        }
        if bucket is not None:
            params["bucket"] = bucket
        points: list[Point] = []
        for _ in range(_MAX_PAGES):
            page = self._get(f"/v1/members/{member}/timeline", params)
            points.extend(
                Point(
                    dt.datetime.fromisoformat(p["time"]),
                    p["code"],
                    float(p["value"]),
                    int(p.get("count") or 1),
                    p.get("min"),
                    p.get("max"),
                )
                for p in page["points"]
            )
            if not page.get("next_after"):
                break
            params["after"] = page["next_after"]
        return points


def _answer(r: httpx.Response) -> Any:
    if r.status_code == 404:
        raise NotYours(404, "no such member among yours")
    if r.status_code in (401, 403):
        # The Hub no longer vouches for the token (expired, account removed) or the
        # account is no longer a coach: only a new login can tell which.
        raise BackendRefused(
            r.status_code, "The backend no longer accepts your session: log out and in again."
        )
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        raise BackendRefused(r.status_code, f"the backend answered {r.status_code}: {detail}")
    return r.json()
