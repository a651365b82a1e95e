"""JupyterHub (with its configurable-http-proxy) as a service of the local stack: where
people log in. Configured by deploy/jupyterhub/jupyterhub_config.py through REJUVE_HUB_*."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from backend.coach_app.config import CoachConfig
from backend.identity import notebook_runtime
from backend.runtime.access import HubAccess
from backend.settings import REPO_ROOT
from backend.stack import code, system
from backend.stack.layout import Layout
from backend.stack.supervised import SupervisedService
from backend.stack.supervisord import Program, base_env

CONFIG = REPO_ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py"
SERVICE = "rejuve-backend"


class HubServer(SupervisedService):
    name = "jupyterhub"
    port_settings = "REJUVE_HUB_PORT / REJUVE_HUB_API_PORT / REJUVE_HUB_PROXY_API_PORT"

    def __init__(
        self,
        layout: Layout,
        access: HubAccess,
        backend_url: str,
        coach: CoachConfig | None = None,
    ) -> None:
        super().__init__(layout)
        self.access = access
        self.backend_url = backend_url
        self.coach = coach
        self.coach_token_file = access.state / "coach.token"

    @property
    def url(self) -> str:
        return self.access.url

    def _env(self, runtime: Path) -> dict[str, str]:
        a = self.access
        return {
            **base_env(),
            "REJUVE_CODE_DIGEST": code.code_digest(),
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
            **self._coach_env(),
        }

    def _coach_env(self) -> dict[str, str]:
        """The coach app's service entry: where the proxy forwards /services/coach/, its
        OAuth redirect, its token (= OAuth client secret) in a file."""
        if self.coach is None:
            return {}
        return {
            "REJUVE_HUB_COACH_URL": f"https://127.0.0.1:{self.coach.port}",
            "REJUVE_HUB_COACH_REDIRECT_URI": self.coach.redirect_uri,
            "REJUVE_HUB_COACH_TOKEN_FILE": str(self.coach_token_file),
        }

    def healthy(self) -> bool:
        return system.https_ok(f"{self.access.api_url}/", self.access.ca_file)

    def ports(self) -> tuple[int, ...]:
        return (self.access.port, self.access.api_port, self.access.proxy_api_port)

    def program(self) -> Program:
        hub = str(Path(sys.executable).parent / "jupyterhub")
        return Program(
            self.name,
            [hub, "-f", str(CONFIG)],
            self.log,
            env=self._env(notebook_runtime.location(REPO_ROOT)),
            # The Hub's working directory is its state: the proxy it starts inherits it.
            directory=self.access.state / "hub",
            # SIGTERM to the Hub alone: it stops its proxy and the users' servers itself;
            # a signal to the group would take the proxy from under it.
            as_group=False,
            stop_wait=30,
        )

    def prepare(self) -> None:
        a = self.access
        (a.state / "hub").mkdir(mode=0o700, parents=True, exist_ok=True)
        a.state.chmod(0o700)
        _write_private(a.token_file, a.backend_token)
        if self.coach is not None:
            _write_private(self.coach_token_file, self.coach.client_secret)
        # Notebooks run as unprivileged accounts, from a runtime they can read.
        notebook_runtime.ensure(REPO_ROOT)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
