"""JupyterHub (with its configurable-http-proxy) as a service of the local stack: where
people log in. Configured by deploy/jupyterhub/jupyterhub_config.py through REJUVE_HUB_*."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from backend.exceptions import SetupError
from backend.identity import notebook_runtime
from backend.runtime.access import HubAccess
from backend.settings import REPO_ROOT
from backend.stack import system
from backend.stack.layout import Layout
from backend.stack.service import ServiceStatus

CONFIG = REPO_ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py"
SERVICE = "rejuve-backend"


class HubServer:
    name = "jupyterhub"

    def __init__(self, layout: Layout, access: HubAccess, backend_url: str) -> None:
        self.layout = layout
        self.access = access
        self.backend_url = backend_url
        self.log = layout.log_file("jupyterhub")
        self.pid_file = layout.pid_file("jupyterhub")

    def _env(self, runtime: Path) -> dict[str, str]:
        a = self.access
        return {
            **os.environ,
            "REJUVE_HUB_STATE_DIR": str(a.state / "hub"),
            "REJUVE_HUB_PORT": str(a.port),
            "REJUVE_HUB_API_PORT": str(a.api_port),
            "REJUVE_HUB_PROXY_API_PORT": str(a.proxy_api_port),
            "REJUVE_HUB_TLS_CERT": str(self.layout.server_cert),
            "REJUVE_HUB_TLS_KEY": str(self.layout.server_key),
            "REJUVE_HUB_CA_FILE": str(a.ca_file),
            "REJUVE_HUB_USER_STORE": str(a.user_store),
            "REJUVE_HUB_ADMIN_USERS": a.admin_users,
            "REJUVE_HUB_BACKEND_URL": self.backend_url,
            "REJUVE_HUB_BACKEND_TOKEN_FILE": str(a.token_file),
            "REJUVE_HUB_NOTEBOOK_RUNTIME": str(runtime),
            "REJUVE_HUB_NOTEBOOK_HOMES": str(self.layout.home / "notebooks"),
        }

    def pid(self) -> int | None:
        pid = system.read_pid(self.pid_file)
        if pid is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if str(CONFIG).encode() in cmdline else None

    def healthy(self) -> bool:
        return system.https_ok(f"{self.access.api_url}/", self.access.ca_file)

    def start(self) -> None:
        if self.pid() is not None:
            return
        for port in (self.access.port, self.access.api_port, self.access.proxy_api_port):
            if system.port_in_use(port):
                raise SetupError(
                    f"port {port} is taken by another program",
                    "set REJUVE_HUB_PORT / REJUVE_HUB_API_PORT / "
                    "REJUVE_HUB_PROXY_API_PORT to free ports",
                )
        a = self.access
        (a.state / "hub").mkdir(mode=0o700, parents=True, exist_ok=True)
        a.state.chmod(0o700)
        fd = os.open(a.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(a.backend_token)
        # Notebooks run as unprivileged accounts, from a runtime they can read.
        runtime = notebook_runtime.ensure(REPO_ROOT)
        hub = str(Path(sys.executable).parent / "jupyterhub")
        system.start_service(
            [hub, "-f", str(CONFIG)],
            self._env(runtime),
            self.log,
            self.pid_file,
            self.healthy,
            "JupyterHub",
        )

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            # SIGTERM lets the Hub stop its proxy and the users' servers; KILL would orphan them.
            system.terminate(pid, timeout=30)
        self.pid_file.unlink(missing_ok=True)

    def status(self) -> ServiceStatus:
        pid = self.pid()
        if pid is None:
            return ServiceStatus(self.name, "down", self.access.url, None, str(self.log))
        return ServiceStatus(
            self.name, "up" if self.healthy() else "degraded", self.access.url, pid, str(self.log)
        )
