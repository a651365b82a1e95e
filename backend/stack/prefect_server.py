"""The Prefect server (API + UI) on our PostgreSQL, served over HTTPS by uvicorn.

`prefect server start` has no TLS options, so we run the same ASGI factory it runs
(`prefect.server.api.server:create_app`) under uvicorn with our certificate.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from backend.exceptions import SetupError
from backend.stack import system
from backend.stack.layout import Layout
from backend.stack.service import ServiceStatus


@dataclass(frozen=True)
class PrefectAccess:
    port: int
    ca_file: Path
    home: Path
    database_url: str = field(repr=False)
    # HTTP basic auth on the API: every local account can reach 127.0.0.1:<port>, notebook
    # accounts included, and flow runs' parameters name files and members.
    auth_string: str = field(repr=False, default="")

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def basic_auth(self) -> tuple[str, str]:
        user, _, password = self.auth_string.partition(":")
        return user, password

    def client_env(self) -> dict[str, str]:
        """Environment for anything that talks to this Prefect server (flows, workers, CLI)."""
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_API_SSL_CERT_FILE": str(self.ca_file),
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_AUTH_STRING": self.auth_string,
        }

    def server_env(self) -> dict[str, str]:
        return {
            **self.client_env(),
            "PREFECT_UI_API_URL": self.api_url,
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": self.database_url,
            # Without these, asyncpg uses TLS but does not verify the server certificate.
            "PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_TLS_ENABLED": "true",
            "PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_TLS_CA_FILE": str(self.ca_file),
            "PREFECT__SERVER_FINAL": "1",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_API_AUTH_STRING": self.auth_string,
        }


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
