"""The `rejuve` command's root: the typer app every command module registers on, and how a
command gets its runtime.

Light on purpose: `rejuve --help` imports this module and the command modules, whose
own imports of the platform happen inside each command's body."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from backend.runtime import Runtime
    from backend.settings import Settings
    from backend.stack.context import StackContext

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    # Our own errors are one line (backend.cli.errors); a traceback is for -v.
    pretty_exceptions_enable=False,
    help="Run and inspect the Rejuve health-data platform.",
)

_state: dict[str, bool] = {"verbose": False, "service": False}


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show error details")] = False,
) -> None:
    _state["verbose"] = verbose


def verbose() -> bool:
    return _state["verbose"]


def service_mode() -> bool:
    """True in a service's process: its stderr is its log file."""
    return _state["service"]


def _settings(service: bool) -> Settings:
    """Settings from the environment (this is an entry point). People's commands log
    warnings only (their output is the tables); services log at REJUVE_LOG_LEVEL."""
    from backend import logs
    from backend.settings import Settings

    settings = Settings()
    _state["service"] = _state["service"] or service
    level = settings.log_level if service or _state["verbose"] else "WARNING"
    logs.configure(level, settings.log_json)
    return settings


def runtime(service: bool = False) -> Runtime:
    """What data commands and services use: reads the configuration, creates nothing."""
    from backend.runtime import Runtime

    return Runtime.from_settings(_settings(service))


def stack() -> StackContext:
    """What the local stack's own commands use (up, down, status, demo): provisions the
    stack's home on first use."""
    from backend.stack.context import StackContext

    return StackContext.from_settings(_settings(service=False))


# The name the command modules (data_cmds among them) call.
context = runtime
