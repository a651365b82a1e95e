"""Errors meant for people (shown as one line) apart from internal faults.

The CLI maps each class to an exit code in one place (`backend.cli.main`).
"""


class UserError(Exception):
    """Something the user can fix: bad input, missing set-up, a refused action."""

    exit_code = 2

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class SetupError(UserError):
    """The local stack cannot be provisioned or started."""

    exit_code = 3


class ServiceDown(UserError):
    """A service the command needs is not running."""

    exit_code = 4
