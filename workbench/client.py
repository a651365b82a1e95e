"""HTTP client for the governed backend, for notebooks.

Inside a notebook spawned by JupyterHub, `connect()` finds the backend's address and CA
(`REJUVE_BACKEND_URL`, `REJUVE_CA_FILE`, set by the Hub's spawner) and the user's own Hub
token (`JUPYTERHUB_API_TOKEN`): nobody pastes a secret."""

from __future__ import annotations

import datetime as dt
import io
import os
import ssl
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd

SUPPRESSED = "suppressed"


class WorkbenchError(RuntimeError):
    """The backend refused or failed; the message is its answer."""


def _when(value: str | dt.datetime | dt.date) -> str:
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    else:
        moment = dt.datetime.fromisoformat(value)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return moment.isoformat()


@dataclass
class Workbench:
    client: httpx.Client

    def _check(self, r: httpx.Response) -> httpx.Response:
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text[:200]
            raise WorkbenchError(f"{r.status_code}: {detail}")
        return r

    def studies(self) -> pd.DataFrame:
        """The studies you work on: pass a `study_id` to the other calls."""
        rows = self._check(self.client.get("/v1/studies")).json()
        frame = pd.DataFrame(
            rows, columns=["study_id", "title", "created_at", "closed_at", "researchers"]
        )
        return frame

    def cohort_stats(
        self,
        study: str,
        *,
        code: str,
        start: Any,
        end: Any,
        period: str = "week",
        criteria: list[dict[str, Any]] | None = None,
        stats: list[str] | None = None,
        sex: list[str] | None = None,
        age_min: int | None = None,
        age_max: int | None = None,
        by: list[str] | None = None,
    ) -> pd.DataFrame:
        """Statistics by period (and `by` sex or age_band) under disclosure control;
        withheld cells read "suppressed"."""
        body: dict[str, Any] = {
            "code": code,
            "start": _when(start),
            "end": _when(end),
            "period": period,
            "criteria": criteria or [],
            "by": by or [],
        }
        for name, value in (("sex", sex), ("age_min", age_min), ("age_max", age_max)):
            if value is not None:
                body[name] = value
        if stats:
            body["stats"] = stats
        answer = self._check(
            self.client.post(f"/v1/studies/{study}/cohort-stats", json=body)
        ).json()
        records = []
        for row in answer["rows"]:
            values = {k: (SUPPRESSED if v is None else v) for k, v in row["values"].items()}
            records.append({**dict(zip(answer["dims"], row["key"], strict=True)), **values})
        frame = pd.DataFrame(records)
        frame.attrs["threshold"] = answer["threshold"]
        frame.attrs["notes"] = answer["notes"]
        return frame

    def dataset(
        self,
        study: str,
        *,
        start: Any,
        end: Any,
        codes: list[str] | None = None,
        shape: str = "long",
    ) -> pd.DataFrame:
        """A pseudonymised extract (Parquet on the wire)."""
        params: dict[str, Any] = {
            "start": _when(start),
            "end": _when(end),
            "shape": shape,
            "format": "parquet",
        }
        if codes:
            params["codes"] = codes
        r = self._check(self.client.get(f"/v1/studies/{study}/dataset", params=params))
        return pd.read_parquet(io.BytesIO(r.content))

    def close(self) -> None:
        self.client.close()


def connect(
    url: str | None = None, token: str | None = None, ca_file: str | None = None
) -> Workbench:
    """A client for the backend; arguments default to what the Hub put in the environment."""
    url = url or os.environ.get("REJUVE_BACKEND_URL")
    token = token or os.environ.get("JUPYTERHUB_API_TOKEN")
    ca_file = ca_file or os.environ.get("REJUVE_CA_FILE")
    if not url or not token:
        raise WorkbenchError(
            "no backend address or token: run inside a JupyterHub notebook, or pass url= and token="
        )
    verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
    client = httpx.Client(
        base_url=url, verify=verify, timeout=120, headers={"Authorization": f"token {token}"}
    )
    return Workbench(client)
