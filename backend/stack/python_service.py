"""A service of ours: a Python process from this virtualenv, detached, with a pid file,
a log file and a heartbeat file it touches while it is healthy."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from backend.stack import system
from backend.stack.layout import Layout
from backend.stack.service import ServiceStatus


class PythonService:
    def __init__(
        self,
        name: str,
        layout: Layout,
        argv: Sequence[str],
        url: str,
        env: dict[str, str] | None = None,
        healthy: Callable[[], bool] | None = None,
        heartbeat_max_age: float = 30.0,
    ) -> None:
        self.name = name
        self.layout = layout
        self.argv = list(argv)
        self.url = url
        self.env = env or {}
        self.log = layout.log_file(name)
        self.pid_file = layout.pid_file(name)
        self.heartbeat = layout.run / f"{name}.heartbeat"
        self._healthy = healthy
        self._max_age = heartbeat_max_age

    def pid(self) -> int | None:
        pid = system.read_pid(self.pid_file)
        if pid is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        # A recycled pid that belongs to some other program is not our service.
        return pid if self.argv[-1].encode() in cmdline else None

    def healthy(self) -> bool:
        if self._healthy is not None:
            return self._healthy()
        try:
            return time.time() - self.heartbeat.stat().st_mtime < self._max_age
        except FileNotFoundError:
            return False

    def start(self) -> None:
        if self.pid() is not None:
            return
        self.heartbeat.unlink(missing_ok=True)
        system.start_service(
            [sys.executable, "-m", "backend.cli.main", *self.argv],
            {**os.environ, **self.env},
            self.log,
            self.pid_file,
            self.healthy,
            self.name,
            timeout=60,
        )

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            system.terminate(pid)
        self.pid_file.unlink(missing_ok=True)
        self.heartbeat.unlink(missing_ok=True)

    def status(self) -> ServiceStatus:
        pid = self.pid()
        if pid is None:
            return ServiceStatus(self.name, "down", self.url, None, str(self.log))
        return ServiceStatus(
            self.name, "up" if self.healthy() else "degraded", self.url, pid, str(self.log)
        )
