"""Running the platform's notebooks as a Hub user does: the kernel is the notebook
runtime's Python (what the Hub spawns, built from the lock's `notebook` group, with the
`workbench` package), the environment is what the spawner sets plus the user's token."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

from backend.identity import notebook_runtime
from backend.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
# What renders a plot in JupyterLab: Panel's output (pyviz extension) or ipywidgets.
PLOT = "application/vnd.holoviews_exec.v0+json"
WIDGET = "application/vnd.jupyter.widget-view+json"


KERNEL = "rejuve-runtime"


def _kernel_spec(tmp: Path) -> Path:
    """A kernel spec for the runtime's Python; returns the directory for JUPYTER_PATH."""
    python = notebook_runtime.ensure(REPO) / "bin" / "python"
    spec = tmp / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "rejuve", "language": "python"})
    )
    return tmp / "jupyter"


@contextmanager
def _jupyter_path(where: Path) -> Iterator[None]:
    # nbclient starts (and, owning it, stops) the kernel itself; it finds the spec here.
    before = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(where)
    try:
        yield
    finally:
        if before is None:
            del os.environ["JUPYTER_PATH"]
        else:
            os.environ["JUPYTER_PATH"] = before


def run(ctx: Runtime, name: str, token: str, tmp: Path, **env: str) -> nbformat.NotebookNode:
    """Execute notebooks/<name> top to bottom; raises on the first failing cell."""
    nb: nbformat.NotebookNode = nbformat.read(  # type: ignore[no-untyped-call]
        NOTEBOOKS / name, as_version=4
    )
    spawned = {
        "JUPYTERHUB_API_TOKEN": token,
        "REJUVE_BACKEND_URL": ctx.backend_url,
        "REJUVE_CA_FILE": str(ctx.layout.ca_cert),
        **env,
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("REJUVE_")}
    client = NotebookClient(
        nb,
        timeout=240,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    with _jupyter_path(_kernel_spec(tmp)):
        client.execute(env={**base, "HOME": str(tmp), **spawned})
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
