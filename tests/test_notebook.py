"""The platform's notebooks, run top to bottom with nbclient as a Hub user against the
running stack (the runtime and environment JupyterHub gives a spawned server): no cell
fails, the plots are there, and the tagged cells print what the data says."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from backend.identity import hub_auth
from backend.query import dataset
from backend.runtime import Runtime
from tests.hub_people import hub_token
from tests.workbench import notebooks, studies
from tests.workbench.notebooks import PLOT, WIDGET


def test_first_notebook_runs_as_a_hub_user(ctx: Runtime, tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    researcher, password = f"nbres-{tag}", f"notebook pass {tag}"
    hub_auth.add_user(ctx.hub.user_store, researcher, password, ["researcher"], rounds=4)
    study, members = studies.first_cohort(ctx, researcher)
    try:
        token = hub_token(ctx, researcher, password)
        # No REJUVE_STUDY: the notebook finds the researcher's one study by itself.
        nb = notebooks.run(
            ctx,
            "01_first_cohort.ipynb",
            token,
            tmp_path,
            REJUVE_START=studies.FIRST_START,
            REJUVE_END=studies.FIRST_END,
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
    assert summary["columns"] == dataset.COLUMNS
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
