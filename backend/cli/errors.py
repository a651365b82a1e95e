"""How a failed command ends: one line on stderr and an exit status, in one place.

Usage errors (unknown command or option, bad value) are click's own and end with status 2
before this is reached. Everything else that escapes a command comes here."""

from __future__ import annotations

from backend.exceptions import UserError

# Exit statuses, as documented in the README: 0 ok, 1 the command ran and found a problem
# (e.g. reconcile, audit verify), 2 usage or a refused request, 3 set-up, 4 a service down,
# 1 also for an internal fault (as before: scripts rely on it), 130 interrupted.
INTERNAL = 1
INTERRUPTED = 130


def exit_code(exc: BaseException) -> int:
    """The exit status for an error. Domain errors carry theirs (`UserError.exit_code`);
    this is the one function to hand to a shared domain-error table once there is one."""
    if isinstance(exc, UserError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    return INTERNAL


def report(exc: BaseException, verbose: bool, service: bool = False) -> int:
    """Show `exc` to the person at the terminal; return the exit status."""
    from rich.markup import escape

    from backend.cli.output import err

    if isinstance(exc, UserError):
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        if exc.detail and verbose:
            err.print(exc.detail, markup=False, highlight=False)
        elif exc.detail:
            err.print("[dim](run with -v for details)[/]")
    elif isinstance(exc, KeyboardInterrupt):
        err.print("interrupted")
    elif service:
        # A service's stderr is its log file: no message (it may quote personal data),
        # the frames only.
        from backend.logs import safe_traceback

        trace = safe_traceback((type(exc), exc, exc.__traceback__))
        err.print(f"internal error: {trace}", markup=False, highlight=False)
    else:  # the last line of defence: one line, the traceback on request
        err.print(f"[red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}")
        if verbose:
            err.print_exception()
        else:
            err.print("[dim](run with -v for the traceback)[/]")
    return exit_code(exc)
