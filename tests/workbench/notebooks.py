"""Running the platform's notebooks as a Hub user does: the kernel is the notebook
runtime's Python (what the Hub spawns, built from the lock's `notebook` group, with the
`workbench` package), the environment is what the spawner sets plus the user's token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat

from backend.demo import notebook
from backend.demo.notebook import REPO
from backend.runtime import Runtime

__all__ = ["REPO", "run"]
# What renders a plot in JupyterLab: Panel's output (pyviz extension) or ipywidgets.
PLOT = "application/vnd.holoviews_exec.v0+json"
WIDGET = "application/vnd.jupyter.widget-view+json"


def run(ctx: Runtime, name: str, token: str, tmp: Path, **env: str) -> nbformat.NotebookNode:
    """Execute notebooks/<name> top to bottom as the demo does; raises on the first failing
    cell."""
    spawned = {
        "JUPYTERHUB_API_TOKEN": token,
        "REJUVE_BACKEND_URL": ctx.backend_url,
        "REJUVE_CA_FILE": str(ctx.layout.ca_cert),
        **env,
    }
    nb: nbformat.NotebookNode = notebook.execute(name, spawned, tmp)
    return nb


def tagged(nb: nbformat.NotebookNode, tag: str) -> list[Any]:
    return [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]


def summary(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """The JSON the `check-summary` cell prints."""
    (cell,) = tagged(nb, "check-summary")
    text = "".join(o["text"] for o in cell.outputs if o.get("name") == "stdout")
    found: dict[str, Any] = json.loads(text)
    return found


def errors(nb: nbformat.NotebookNode) -> list[str]:
    return [
        f"{o.get('ename')}: {o.get('evalue')}"
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]


def mimetypes(cell: Any) -> set[str]:
    return {m for o in cell.get("outputs", []) for m in o.get("data", {})}
