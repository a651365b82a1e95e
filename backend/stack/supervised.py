"""A service of the local stack that supervisord runs: what each one shares (start, stop,
status); the services say only what to run and how to tell that it answers."""

from __future__ import annotations

from pathlib import Path

from backend.exceptions import SetupError
from backend.stack import system
from backend.stack.layout import Layout
from backend.stack.service import ServiceStatus
from backend.stack.supervisord import (
    BACKOFF,
    FATAL,
    RUNNING,
    STARTING,
    Program,
    Supervisord,
    started_at,
    wait_started,
)


class SupervisedService:
    name: str
    # Environment variable that moves each port, for the "port taken" hint.
    port_settings: str = ""
    # Generous: on a loaded machine a healthy start can take minutes (Prefect, the Hub).
    start_timeout: float = 180

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.daemon = Supervisord(layout)

    # -- what each service says --------------------------------------------------------------

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def log(self) -> Path:
        return self.layout.log_file(self.name)

    def ports(self) -> tuple[int, ...]:
        return ()

    def program(self) -> Program:
        """The command supervisord runs (in the foreground), its user and environment."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Files the program needs, written before each start by `rejuve up`."""

    def healthy(self) -> bool:
        raise NotImplementedError

    # -- the Service interface ---------------------------------------------------------------

    def start(self) -> None:
        """Start under supervisord (which must run this program: `supervisor.up` sees to
        that) and return once the service answers."""
        state = self.daemon.state(self.name)
        if state is None:
            raise SetupError(f"supervisord does not run {self.name}", "run `rejuve up`")
        if state not in (RUNNING, STARTING, BACKOFF):
            for port in self.ports():
                if system.port_in_use(port):
                    raise SetupError(
                        f"port {port} is taken by another program",
                        f"set {self.port_settings} to a free port",
                    )
            self.prepare()
            self.daemon.start(self.name)
        wait_started(self.daemon, self.name, self.healthy, self.log, self.start_timeout)

    def stop(self) -> None:
        self.daemon.stop(self.name)

    def status(self, restarts: dict[str, int] | None = None) -> ServiceStatus:
        info = self.daemon.info(self.name)
        counts = self.daemon.restarts() if restarts is None else restarts
        n = counts.get(self.name, 0)
        log = str(self.log)
        if info is None:
            return ServiceStatus(self.name, "down", self.url, None, log)
        state = str(info["statename"])
        since = started_at(info)
        pid = int(info["pid"]) or None
        # STARTING: supervisord waits `startsecs` before it calls a program running; one
        # that answers already is up.
        if state in (RUNNING, STARTING) and self.healthy():
            return ServiceStatus(self.name, "up", self.url, pid, log, "", n, since)
        if state == RUNNING:
            return ServiceStatus(self.name, "degraded", self.url, pid, log, "", n, since)
        if state in (STARTING, BACKOFF):
            detail = "restarting" if n else "starting"
            return ServiceStatus(self.name, "degraded", self.url, pid, log, detail, n, since)
        detail = "gave up after repeated failed starts" if state == FATAL else ""
        return ServiceStatus(self.name, "down", self.url, None, log, detail, n, None)
