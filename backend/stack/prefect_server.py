"""The Prefect server (API + UI) on our PostgreSQL, served over HTTPS by uvicorn.

`prefect server start` has no TLS options, so we run the same ASGI factory it runs
(`prefect.server.api.server:create_app`) under uvicorn with our certificate.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from backend.runtime.access import PrefectAccess
from backend.stack import code, system
from backend.stack.layout import Layout
from backend.stack.service import ServiceStatus
from backend.stack.supervised import SupervisedService
from backend.stack.supervisord import Program, base_env


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
