"""`rejuve features`: the Feast CLI on `feature_repo/` with this stack's environment
(addresses, CA, passwords from the runtime; nothing written to disk)."""

from __future__ import annotations

from typing import Annotated

import typer

features_app = typer.Typer(no_args_is_help=True, help="The Feast feature store (feature_repo/).")


def _feast(args: list[str], purpose: str = "serve") -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    from backend.cli.app import context
    from backend.features.environment import REPO, feast_environment

    env = {**os.environ, **feast_environment(context(), "apply" if purpose == "apply" else "serve")}
    feast = Path(sys.executable).parent / "feast"
    code = subprocess.run([str(feast), "-c", str(REPO), *args], env=env, check=False).returncode
    if code:
        raise typer.Exit(code)


@features_app.command("apply")
def features_apply() -> None:
    """Register the repository's entities, views and services (registry writer role)."""
    _feast(["apply"], purpose="apply")


@features_app.command("plan")
def features_plan() -> None:
    """What `apply` would change."""
    _feast(["plan"], purpose="apply")


@features_app.command("list")
def features_list(
    what: Annotated[
        str, typer.Argument(help="feature-views | feature-services | entities | data-sources")
    ] = "feature-views",
) -> None:
    """List registered objects (registry reader role)."""
    if what not in ("feature-views", "feature-services", "entities", "data-sources"):
        raise typer.BadParameter(f"unknown kind {what!r}")
    _feast([what, "list"])


@features_app.command(
    "feast", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def features_feast(ctx: typer.Context) -> None:
    """Any other feast command, e.g. `rejuve features feast feature-services describe X`."""
    _feast(list(ctx.args))
