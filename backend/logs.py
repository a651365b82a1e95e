"""Structured logging: key=value (or JSON) lines via structlog, never personal data.

Log files outlive crypto-shredding (an erased member's key is destroyed, their copies in
a log are not), so nothing that can carry a member's data may reach them. Two things did:
structlog's default console renderer formats exceptions with rich and `show_locals=True`,
which printed every local variable of every frame (member ids, values, device names such
as "Anna Smith's iPhone"); and exception messages, which quote the value they refused.
So exceptions are rendered here, for every logger of the process, as their type and their
frames (file, line, function) only. A database error keeps its SQLSTATE and the names of
the table, column and constraint, which identify the fault without quoting a row."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any

import structlog

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

_WITHHELD = "message withheld: it may quote personal data"


def _describe(exc: BaseException) -> str:
    """The exception's type and what of it is safe to keep."""
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    diag = getattr(exc, "diag", None)
    if diag is not None:  # psycopg: names of objects, never the values of a row
        parts = [
            f"{label}={value}"
            for label, value in (
                ("sqlstate", getattr(exc, "sqlstate", None)),
                ("table", getattr(diag, "table_name", None)),
                ("column", getattr(diag, "column_name", None)),
                ("constraint", getattr(diag, "constraint_name", None)),
            )
            if value
        ]
        return f"{name} ({', '.join(parts) or _WITHHELD})"
    return f"{name} ({_WITHHELD})"


def safe_traceback(exc_info: ExcInfo | tuple[None, None, None]) -> str:
    """A traceback without locals and without exception messages, causes included
    (outermost first: what failed, then why)."""
    lines: list[str] = []
    exc: BaseException | None = exc_info[1]
    seen: set[int] = set()
    how = ""
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if how:
            lines.append(f"{how}:")
        lines.append(_describe(exc))
        for frame in traceback.extract_tb(exc.__traceback__):
            lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
        if exc.__cause__ is not None:
            exc, how = exc.__cause__, "caused by"
        elif exc.__context__ is not None and not exc.__suppress_context__:
            exc, how = exc.__context__, "while handling"
        else:
            exc = None
    return "\n".join(lines)


def _exc_info_of(value: Any) -> ExcInfo | None:
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple) and len(value) == 3 and value[1] is not None:
        return value
    if value is True:
        info = sys.exc_info()
        return info if info[1] is not None else None
    return None


def _render_exception(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: `exc_info` becomes a safe `exception` text."""
    info = _exc_info_of(event.pop("exc_info", None))
    if info is not None:
        event["exception"] = safe_traceback(info)
    return event


def _no_exception_formatter(sio: Any, exc_info: Any) -> None:
    # The processor above has already turned exceptions into safe text; the console
    # renderer must never format one itself (its default is rich with show_locals).
    return None


class _SafeRecord(logging.LogRecord):
    """Every stdlib record of the process (uvicorn, Prefect, libraries) gets its traceback
    from `safe_traceback`: a formatter uses `exc_text` when it is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.exc_info and self.exc_info[1] is not None:
            self.exc_text = safe_traceback(self.exc_info)


def configure(level: str = "INFO", json: bool = False) -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=_no_exception_formatter
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _render_exception,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.setLogRecordFactory(_SafeRecord)


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
