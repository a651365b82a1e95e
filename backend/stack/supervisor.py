"""Start, stop and report the services of the local stack, in dependency order."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from backend.exceptions import UserError
from backend.stack import certs
from backend.stack.context import StackContext
from backend.stack.service import Service, ServiceStatus
from backend.stack.timescaledb import TimescaleDB

Progress = Callable[[str], None]


def _select(ctx: StackContext, names: Iterable[str] | None) -> list[Service]:
    services = ctx.services()
    if not names:
        return services
    wanted = list(names)
    known = {s.name for s in services}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise UserError(f"unknown service {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [s for s in services if s.name in wanted]


def up(
    ctx: StackContext, names: Iterable[str] | None = None, progress: Progress = lambda _: None
) -> list[ServiceStatus]:
    """Idempotent: starts what is down, prepares the database, leaves the rest alone."""
    if certs.ensure(ctx.layout):
        progress("created the local CA and server certificate")
    for service in _select(ctx, names):
        progress(f"starting {service.name}")
        service.start()
        if service.name == "timescaledb":
            if isinstance(service, TimescaleDB):
                progress("creating roles and databases")
                service.bootstrap()
            progress("applying migrations")
            # Imported here: Alembic + SQLAlchemy cost a second of start-up to every command.
            from backend.db import migrate

            migrate.upgrade(ctx.db)
    return status(ctx, names)


def down(
    ctx: StackContext, names: Iterable[str] | None = None, progress: Progress = lambda _: None
) -> list[ServiceStatus]:
    for service in reversed(_select(ctx, names)):
        progress(f"stopping {service.name}")
        service.stop()
    return status(ctx, names)


def status(ctx: StackContext, names: Iterable[str] | None = None) -> list[ServiceStatus]:
    return [s.status() for s in _select(ctx, names)]
