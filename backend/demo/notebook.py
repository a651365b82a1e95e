"""The researcher's first notebook, run the way JupyterHub runs it (the notebook runtime's
Python, the Hub user's token, the spawner's environment) and kept as HTML with its plots:
the demo's last step, and what the notebook tests use to execute notebooks.

The HTML carries Panel's and Bokeh's JavaScript inline (the notebook asks for
`pn.extension(inline=True)`), so its plots render in a browser with no network (checked
in Chromium with every request blocked). nbconvert's template still links require.js,
MathJax and the widget manager from CDNs: the plots need none of them; the explorer's
widgets are not in the export (their state lives in the kernel)."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.identity import notebook_runtime

if TYPE_CHECKING:
    from backend.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
KERNEL = "rejuve-runtime"


def _kernel_spec(where: Path) -> Path:
    """A kernel spec for the runtime's Python under `where`; returns the JUPYTER_PATH entry."""
    python = notebook_runtime.ensure(REPO) / "bin" / "python"
    spec = where / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    # The kernel listens on loopback only, under this process; its start-up warning about
    # unencrypted TCP would only alarm whoever reads the demo's output.
    argv = [
        str(python),
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
        "--IPKernelApp.log_level=ERROR",
    ]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "rejuve", "language": "python"})
    )
    return where / "jupyter"


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


def execute(name: str, spawned: Mapping[str, str], home: Path, timeout: int = 240) -> Any:
    """Run notebooks/<name> top to bottom in the notebook runtime with the environment a
    spawned server has (`spawned`: the Hub token, backend URL, CA file, REJUVE_*); raises
    on the first failing cell. Returns the executed notebook (nbformat)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)  # type: ignore[no-untyped-call]
    # Not the caller's REJUVE_* settings: only what a spawned server would see.
    base = {k: v for k, v in os.environ.items() if not k.startswith("REJUVE_")}
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    with _jupyter_path(_kernel_spec(home)):
        client.execute(env={**base, "HOME": str(home), **spawned})
    return nb


def to_html(nb: Any, target: Path) -> Path:
    """The executed notebook as one HTML file (plots included, no CDN)."""
    from nbconvert import HTMLExporter

    for cell in nb.cells:  # Panel's comm messages leave outputs with no data: nothing to show
        cell["outputs"] = [o for o in cell.get("outputs", []) if "data" not in o or o["data"]]
    exporter = HTMLExporter(template_name="lab")  # type: ignore[no-untyped-call]
    body, _ = exporter.from_notebook_node(nb)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body)
    target.chmod(0o600)  # pseudonymised data, not for everyone on the host
    return target


def first_notebook_html(
    ctx: Runtime, password: str, start: dt.datetime, end: dt.datetime, target: Path
) -> Path:
    """Notebook 01 run as the demo's researcher over the demo's window, kept as HTML at
    `target` (returned)."""
    from backend.demo import study
    from backend.identity.hub_client import login_token

    token = login_token(ctx.hub.url, ctx.layout.ca_cert, study.RESEARCHER, password, "demo")
    spawned = {
        "JUPYTERHUB_API_TOKEN": token,
        "REJUVE_BACKEND_URL": ctx.backend_url,
        "REJUVE_CA_FILE": str(ctx.layout.ca_cert),
        "REJUVE_STUDY": study.STUDY,
        "REJUVE_START": start.date().isoformat(),
        "REJUVE_END": end.date().isoformat(),
    }
    with tempfile.TemporaryDirectory(prefix="rejuve-nb-") as home:
        nb = execute("01_first_cohort.ipynb", spawned, Path(home))
    return to_html(nb, target)
