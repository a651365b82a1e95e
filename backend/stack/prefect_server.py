"""The Prefect server (API + UI) on our PostgreSQL, served over HTTPS by uvicorn.

`prefect server start` has no TLS options, so we run the same ASGI factory it runs
(`prefect.server.api.server:create_app`) under uvicorn with our certificate.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from backend.stack import code, system
from backend.stack.layout import Layout
from backend.stack.service import ServiceStatus
from backend.stack.supervised import SupervisedService
from backend.stack.supervisord import Program, base_env


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


class PrefectServer(SupervisedService):
    name = "prefect"
    port_settings = "REJUVE_PREFECT_PORT"
    _marker = "prefect.server.api.server:create_app"

    def __init__(self, layout: Layout, access: PrefectAccess) -> None:
        super().__init__(layout)
        self.access = access

    @property
    def url(self) -> str:
        return self.access.ui_url

    def ports(self) -> tuple[int, ...]:
        return (self.access.port,)

    def program(self) -> Program:
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
        # It runs Prefect's code, not ours: only a changed lock restarts it.
        env = {
            **base_env(),
            **self.access.server_env(),
            "REJUVE_CODE_DIGEST": code.lock_digest(),
        }
        return Program(self.name, cmd, self.log, env=env)

    def prepare(self) -> None:
        self.access.home.mkdir(parents=True, exist_ok=True)

    def healthy(self) -> bool:
        return system.https_ok(f"{self.access.api_url}/health", self.access.ca_file)

    def status(self, restarts: dict[str, int] | None = None) -> ServiceStatus:
        # The UI's own login page has one field and wants `user:password` in it (the API's
        # 401 carries no WWW-Authenticate, so a browser never offers its basic-auth prompt).
        return replace(super().status(restarts), login=self.access.auth_string)
