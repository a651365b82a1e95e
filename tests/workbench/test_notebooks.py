"""Notebooks 02 (a point-in-time training set and a model) and 03 (data quality), run
top to bottom with nbclient as a Hub user against the running stack, on a row-level
study (tests/workbench/studies.py); notebook 01 is tests/test_notebook.py."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from backend.runtime import Runtime
from tests.workbench import notebooks, studies
from tests.workbench.notebooks import PLOT


def test_training_notebook_builds_a_point_in_time_set_and_a_model(
    ctx: Runtime, study: studies.Study, tmp_path: Path
) -> None:
    nb = notebooks.run(
        ctx,
        "02_training_set.ipynb",
        study.token,
        tmp_path,
        REJUVE_STUDY=study.study,
        REJUVE_END=studies.END.date().isoformat(),
        REJUVE_WEEKS="12",
    )
    assert notebooks.errors(nb) == []
    s = notebooks.summary(nb)
    assert s["pseudonyms"] == studies.MEMBERS
    assert s["rows"] == studies.MEMBERS * 12
    # Held out: the last three weeks, trained on the nine before.
    assert (s["train_rows"], s["test_rows"]) == (studies.MEMBERS * 9, studies.MEMBERS * 3)
    assert s["at_tz"] == "Europe/Zurich"  # the zone sent is the zone returned
    assert s["member_id_in_columns"] is False
    # The resting heart rate drifts upwards: the model beats last month's mean.
    assert s["mae_model"] < s["mae_baseline"]
    (plot,) = notebooks.tagged(nb, "plot")
    assert PLOT in notebooks.mimetypes(plot)
    outputs = json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])
    assert not any(str(m) in outputs for m in study.members)


def test_data_quality_notebook_shows_coverage_and_wear_time(
    ctx: Runtime, study: studies.Study, tmp_path: Path
) -> None:
    nb = notebooks.run(
        ctx,
        "03_data_quality.ipynb",
        study.token,
        tmp_path,
        REJUVE_STUDY=study.study,
        REJUVE_START=(studies.END - dt.timedelta(days=7)).date().isoformat(),
        REJUVE_END=studies.END.date().isoformat(),
    )
    assert notebooks.errors(nb) == []
    s = notebooks.summary(nb)
    assert s["measures"] == ["heart rate", "steps", "body weight"]
    assert s["days"] == 7
    per_day = s["members_per_day"]
    assert per_day["heart rate"] == [12] * 7
    # Steps on the first four days only; body weight of four members: withheld.
    assert per_day["steps"][:4] == [12] * 4
    assert per_day["body weight"][0] is None
    assert s["wear_rows"] == studies.MEMBERS * 7
    assert s["wear_days_without_data"] == 0
    expected = sorted(
        studies.wear_minutes(n, d) / 60
        for n in range(studies.MEMBERS)
        for d in range(studies.DAYS - 7, studies.DAYS)
    )
    assert s["wear_median_hours"] == round((expected[41] + expected[42]) / 2, 2)
    for tag in ("plot", "plot-wear"):
        (cell,) = notebooks.tagged(nb, tag)
        assert PLOT in notebooks.mimetypes(cell)
