"""The platform's notebooks, run top to bottom with nbclient as a Hub user against the
running stack (the runtime and environment JupyterHub gives a spawned server): no cell
fails, the plots are there, and the tagged cells print what the data says."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from pathlib import Path

from backend.identity import hub_auth
from backend.runtime import Runtime
from tests import seed
from tests.hub_people import hub_token
from tests.workbench import notebooks
from tests.workbench.notebooks import PLOT, WIDGET

T0 = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def test_first_notebook_runs_as_a_hub_user(ctx: Runtime, tmp_path: Path) -> None:
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
    try:
        token = hub_token(ctx, researcher, password)
        # No REJUVE_STUDY: the notebook finds the researcher's one study by itself.
        nb = notebooks.run(
            ctx,
            "01_first_cohort.ipynb",
            token,
            tmp_path,
            REJUVE_START="2026-11-02",
            REJUVE_END="2026-11-05",
        )
    finally:
        hub_auth.remove_user(ctx.hub.user_store, researcher)
    assert notebooks.errors(nb) == []
    summary = notebooks.summary(nb)
    assert summary["studies"] == [study]  # found by the notebook itself
    assert summary["daily_rows"] == 4  # three days and the total
    assert summary["total_members"] == 12
    assert summary["raised_suppressed"] == 4  # 6 members: all withheld
    assert summary["extract_rows"] == 12 * 3 * 2
    assert summary["pseudonyms"] == 12
    assert summary["columns"] == ["pseudonym", "time", "code", "value", "unit"]
    (plot,) = notebooks.tagged(nb, "plot")
    assert PLOT in notebooks.mimetypes(plot)
    # The sub-cohort's plot: every day withheld, each gap listed with its reason.
    (withheld,) = notebooks.tagged(nb, "plot-withheld")
    assert PLOT in notebooks.mimetypes(withheld)
    shown = json.dumps(withheld.outputs)
    assert "2026-11-03" in shown and "fewer than 10 members" in shown
    (explorer,) = notebooks.tagged(nb, "explorer")
    assert WIDGET in notebooks.mimetypes(explorer)
    outputs = json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])
    assert "suppressed" in outputs
    assert not any(str(m) in outputs for m in members) and "Anna" not in outputs
