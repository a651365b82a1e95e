"""Start, stop and report the services of the local stack, in dependency order.

supervisord (backend/stack/supervisord.py) runs them and restarts one that dies; this
module brings it up with the stack's programs, starts the services one after the other
(each waited for until it answers), and stops them in reverse."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from backend.exceptions import UserError
from backend.stack import certs, legacy
from backend.stack.context import StackContext
from backend.stack.service import Service, ServiceStatus
from backend.stack.supervised import SupervisedService
from backend.stack.supervisord import Supervisord
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
    """Idempotent: starts what is down, prepares the database, restarts what runs code that
    changed since it started, leaves the rest alone."""
    if certs.ensure(ctx.layout):
        progress("created the local CA and server certificate")
    everything = ctx.services()
    supervised = [s for s in everything if isinstance(s, SupervisedService)]
    daemon = Supervisord(ctx.layout)
    if not daemon.running():
        # Servers started by a version of rejuve before supervisord: stop them first, or
        # their ports would keep the supervised ones from starting.
        for name in legacy.stop_unsupervised(ctx.layout, supervised):
            progress(f"stopped {name} (started without supervisord)")
    progress("starting supervisord")
    restarted = set(daemon.apply([s.program() for s in supervised]))
    wanted = {s.name for s in _select(ctx, names)}
    for service in everything:
        if service.name not in wanted and service.name not in restarted:
            continue
        if service.name in restarted:
            progress(f"restarting {service.name} (its code or settings changed)")
        else:
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
        if service.name == "redis":
            progress("registering the feature store's definitions (feast apply)")
            from backend.features.environment import apply_repo

            apply_repo(ctx)
    rows = status(ctx, names)
    return [
        _note(r, "restarted: code or settings changed")
        if r.name in restarted and not r.detail
        else r
        for r in rows
    ]


def _note(row: ServiceStatus, detail: str) -> ServiceStatus:
    from dataclasses import replace

    return replace(row, detail=detail)


def down(
    ctx: StackContext, names: Iterable[str] | None = None, progress: Progress = lambda _: None
) -> list[ServiceStatus]:
    daemon = Supervisord(ctx.layout)
    if not daemon.running():
        for name in legacy.stop_unsupervised(
            ctx.layout, [s for s in _select(ctx, names) if isinstance(s, SupervisedService)]
        ):
            progress(f"stopped {name} (started without supervisord)")
    for service in reversed(_select(ctx, names)):
        progress(f"stopping {service.name}")
        service.stop()
    if not names:
        progress("stopping supervisord")
        daemon.shutdown()
    return status(ctx, names)


def status(ctx: StackContext, names: Iterable[str] | None = None) -> list[ServiceStatus]:
    services = _select(ctx, names)
    restarts = Supervisord(ctx.layout).restarts()
    return [
        s.status(restarts) if isinstance(s, SupervisedService) else s.status() for s in services
    ]
