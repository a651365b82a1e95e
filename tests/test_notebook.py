"""The researcher's first notebook, run top to bottom with nbclient as a Hub user against
the running stack (the same environment JupyterHub gives a spawned server)."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from backend.identity import hub_auth
from backend.stack.context import StackContext
from tests import seed
from tests.hub_people import hub_token

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "01_first_cohort.ipynb"
T0 = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def test_first_notebook_runs_as_a_hub_user(
    ctx: StackContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = secrets.token_hex(3)
    researcher, password = f"nbres-{tag}", f"notebook pass {tag}"
    study = f"nb-{tag}"
    hub_auth.add_user(ctx.hub.user_store, researcher, password, ["researcher"], rounds=4)
    members = [uuid.uuid4() for _ in range(12)]
    with ctx.db.connect("owner") as conn:
        seed.study(conn, study, [researcher])
        seed.observations(
            conn,
            [
                (m, T0 + dt.timedelta(days=d, hours=h), "8867-4", 58 + n + h, "/min")
                for n, m in enumerate(members)
                for d in range(3)
                for h in range(2)
            ]
            + [(m, T0, "4548-4", 7.1 if n % 2 else 5.4, "%") for n, m in enumerate(members)],
            source="Anna's Watch",  # a source name that carries a first name
        )
    with ctx.db.connect("backend") as conn:
        seed.consent_all(conn, members, f"study:{study}")
    token = hub_token(ctx, researcher, password)
    # What the Hub's spawner puts into a user's server (deploy/jupyterhub/jupyterhub_config.py)
    for name, value in {
        "JUPYTERHUB_API_TOKEN": token,
        "REJUVE_BACKEND_URL": ctx.backend_url,
        "REJUVE_CA_FILE": str(ctx.layout.ca_cert),
        # No REJUVE_STUDY: the notebook finds the researcher's one study by itself.
        "REJUVE_START": "2026-11-02",
        "REJUVE_END": "2026-11-05",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REJUVE_STUDY", raising=False)
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(
            nb,
            timeout=120,
            kernel_name="python3",
            resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        ).execute()
    finally:
        hub_auth.remove_user(ctx.hub.user_store, researcher)
    last = nb.cells[-1].outputs[0]["text"]
    summary = json.loads(last)
    assert summary["studies"] == [study]  # found by the notebook itself
    assert summary["daily_rows"] == 4  # three days and the total
    assert summary["total_members"] == 12
    assert summary["raised_suppressed"] == 4  # 6 members: all withheld
    assert summary["extract_rows"] == 12 * 3 * 2
    assert summary["pseudonyms"] == 12
    assert summary["columns"] == ["pseudonym", "time", "code", "value", "unit"]
    outputs = json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])
    assert "suppressed" in outputs
    assert not any(str(m) in outputs for m in members) and "Anna" not in outputs
