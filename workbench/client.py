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
        return _cohort_frame(answer, ["count", *body.get("stats", ["mean", "median"])])

    def feature_views(self) -> pd.DataFrame:
        """The feature catalogue (one row per view and feature, with the services that
        include it): what `training_set(features=["view:feature"])` accepts."""
        answer = self._check(self.client.get("/v1/feature-views")).json()
        rows = [
            {
                "view": v["name"],
                "feature": f,
                "services": list(v.get("services", [])),
                "description": v.get("description", ""),
            }
            for v in answer
            for f in v["features"]
        ]
        return pd.DataFrame(rows, columns=["view", "feature", "services", "description"])

    def training_set(
        self,
        study: str,
        entity_df: pd.DataFrame,
        *,
        service: str | None = "research_model",
        features: list[str] | None = None,
    ) -> pd.DataFrame:
        """Point-in-time features for (pseudonym, at) rows: each row's features as they
        were known at `at`, never later. `at` must be time-zone aware; the answer keeps
        each row's zone. Members without consent to the study are absent. Only for
        studies at the `row-level` access level."""
        if not {"pseudonym", "at"} <= set(entity_df.columns):
            raise WorkbenchError("entity_df needs the columns 'pseudonym' and 'at'")
        at = entity_df["at"]
        zone = getattr(at.dtype, "tz", None)
        moments = [pd.Timestamp(t) for t in at]
        if any(m.tzinfo is None for m in moments):
            raise WorkbenchError("'at' must be time-zone aware (e.g. .dt.tz_localize('UTC'))")
        body: dict[str, Any] = {
            "rows": [
                {"pseudonym": str(p), "at": m.isoformat()}
                for p, m in zip(entity_df["pseudonym"], moments, strict=True)
            ]
        }
        if features is not None:
            body["features"] = features
        else:
            body["service"] = service
        answer = self._check(
            self.client.post(f"/v1/studies/{study}/training-set", json=body)
        ).json()
        frame = pd.DataFrame(answer["rows"], columns=answer["columns"])
        stamps = [dt.datetime.fromisoformat(str(v)) for v in frame["at"]]
        if zone is not None:  # one zone for the column: a proper datetime64[ns, zone]
            frame["at"] = pd.to_datetime(stamps, utc=True).tz_convert(zone)
        else:  # mixed offsets, as sent: aware Timestamps, each in its own
            frame["at"] = pd.Series([pd.Timestamp(s) for s in stamps], dtype=object)
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


def _cohort_frame(answer: dict[str, Any], columns: list[str] | None = None) -> pd.DataFrame:
    """The backend's answer as a frame: withheld values read "suppressed" (undefined ones,
    such as the sd of one observation, are None); `attrs` keeps the threshold, the notes
    and why each cell or statistic is withheld."""
    dims = answer["dims"]
    whole = {tuple(s["key"]) for s in answer["suppressed"] if s["statistic"] is None}
    single = {(tuple(s["key"]), s["statistic"]) for s in answer["suppressed"]}
    records = []
    for row in answer["rows"]:
        key = tuple(row["key"])
        values = {
            k: (SUPPRESSED if v is None and (key in whole or (key, k) in single) else v)
            for k, v in row["values"].items()
        }
        records.append({**dict(zip(dims, key, strict=True)), **values})
    # No cell at all (nobody matched): still the columns a caller indexes by.
    frame = pd.DataFrame(records, columns=None if records else [*dims, *(columns or ["count"])])
    frame.attrs["threshold"] = answer["threshold"]
    frame.attrs["notes"] = answer["notes"]
    frame.attrs["dims"] = dims
    frame.attrs["withheld"] = answer["suppressed"]
    return frame


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
