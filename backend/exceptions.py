"""Errors meant for people (shown as one line) apart from internal faults, and the one table
that says what each becomes: an HTTP status (`http_status`, used by the API's error handler
and its guard's audit record) and a CLI exit code (`exit_code`, for the CLI's last line of
defence). Raise the most specific class: a route never maps errors to statuses by hand.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: bad input, missing set-up, a refused action."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail

    @property
    def exit_code(self) -> int:
        # Kept as an attribute for callers that read `e.exit_code`; the table decides.
        return exit_code(self)


class Invalid(UserError):
    """The input is well-formed but not acceptable (an unknown study, a bad value)."""


class NotFound(UserError):
    """No such object (or not the caller's to see: the two are not told apart)."""


class Conflict(UserError):
    """The object's state refuses the change (already resolved, would lock admins out)."""


class Forbidden(UserError):
    """The caller may not do this."""


class SetupError(UserError):
    """The local stack cannot be provisioned or started."""


class ServiceDown(UserError):
    """A service the command needs is not running."""


# (HTTP status, CLI exit code) per class; a subclass not listed takes its nearest base's.
# Exit codes: 1 internal error, 2 the user's to fix (usage, not found, conflict), 3 set-up,
# 4 a service is down. Scripts already test for 2, so the finer classes keep it.
ERROR_TABLE: dict[type[BaseException], tuple[int, int]] = {
    UserError: (400, 2),
    Invalid: (422, 2),
    NotFound: (404, 2),
    Conflict: (409, 2),
    Forbidden: (403, 2),
    SetupError: (500, 3),
    ServiceDown: (503, 4),
}
INTERNAL = (500, 1)


def _entry(exc: BaseException | type[BaseException]) -> tuple[int, int]:
    cls = exc if isinstance(exc, type) else type(exc)
    for base in cls.__mro__:
        if base in ERROR_TABLE:
            return ERROR_TABLE[base]
    return INTERNAL


def http_status(exc: BaseException | type[BaseException]) -> int:
    """The HTTP status a domain error is answered with (500: not a domain error)."""
    return _entry(exc)[0]


def exit_code(exc: BaseException | type[BaseException]) -> int:
    """The CLI exit code for an error (1: not a domain error)."""
    return _entry(exc)[1]
