"""One table maps each domain error to an HTTP status and a CLI exit code; no stack needed."""

from __future__ import annotations

import pytest

from backend.exceptions import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    ServiceDown,
    SetupError,
    UserError,
    exit_code,
    http_status,
)
from backend.governance.studies import NoSuchStudy


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (UserError("x"), 400, 2),
        (Invalid("x"), 422, 2),
        (NotFound("x"), 404, 2),
        (Conflict("x"), 409, 2),
        (Forbidden("x"), 403, 2),
        (SetupError("x"), 500, 3),
        (ServiceDown("x"), 503, 4),
        (NoSuchStudy("x"), 404, 2),
        (RuntimeError("x"), 500, 1),
    ],
)
def test_each_error_has_one_status_and_one_exit_code(
    error: Exception, status: int, code: int
) -> None:
    assert (http_status(error), exit_code(error)) == (status, code)
    if isinstance(error, UserError):
        assert error.exit_code == code  # what the CLI reads today
