"""The Prefect server (API + UI) on our PostgreSQL, served over HTTPS by uvicorn.

`prefect server start` has no TLS options, so we run the same ASGI factory it runs
(`prefect.server.api.server:create_app`) under uvicorn with our certificate.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from backend.exceptions import SetupError
from backend.runtime.access import PrefectAccess
from backend.stack import system
from backend.stack.layout import Layout
from backend.stack.service import ServiceStatus


class PrefectServer:
    name = "prefect"
    _marker = "prefect.server.api.server:create_app"

    def __init__(self, layout: Layout, access: PrefectAccess) -> None:
        self.layout = layout
        self.access = access
        self.log = layout.log_file("prefect")
        self.pid_file = layout.pid_file("prefect")

    def pid(self) -> int | None:
        pid = system.read_pid(self.pid_file)
        if pid is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        # A recycled pid belonging to something else is not our server.
        return pid if self._marker.encode() in cmdline else None

    def start(self) -> None:
        if self.pid() is not None:
            return
        if system.port_in_use(self.access.port):
            raise SetupError(
                f"port {self.access.port} is taken by another program",
                "set REJUVE_PREFECT_PORT to a free port",
            )
        self.access.home.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            self._marker,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.access.port),
            "--ssl-certfile",
            str(self.layout.server_cert),
            "--ssl-keyfile",
            str(self.layout.server_key),
            "--timeout-keep-alive",
            "5",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        system.start_service(
            cmd,
            {**os.environ, **self.access.server_env()},
            self.log,
            self.pid_file,
            self.healthy,
            "Prefect server",
        )

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            system.terminate(pid)
        self.pid_file.unlink(missing_ok=True)

    def healthy(self) -> bool:
        return system.https_ok(f"{self.access.api_url}/health", self.access.ca_file)

    def status(self) -> ServiceStatus:
        pid = self.pid()
        if pid is None:
            return ServiceStatus(self.name, "down", self.access.ui_url, None, str(self.log))
        return ServiceStatus(
            self.name,
            "up" if self.healthy() else "degraded",
            self.access.ui_url,
            pid,
            str(self.log),
        )
