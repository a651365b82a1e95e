"""JupyterHub spawner for the local stack: each person's notebook server runs as their own
unprivileged system account (accounts.py), from the runtime under /opt/rejuve
(notebook_runtime.py), in a private home.

JupyterHub's LocalProcessSpawner expects the system account to carry the Hub user's name;
ours are prefixed so they cannot collide with, or be, an existing system user (a Hub user
called `postgres` or `root` must not become that account).
"""

from __future__ import annotations

import asyncio
import pwd
from pathlib import Path
from typing import Any

from jupyterhub.spawner import (  # type: ignore[import-untyped]
    LocalProcessSpawner,
    set_user_setuid,
)
from traitlets import Unicode

from backend.identity import accounts


class AccountSpawner(LocalProcessSpawner):  # type: ignore[misc]
    homes_dir = Unicode(help="where the accounts' homes are made (mode 0711)").tag(config=True)
    skeleton_dir = Unicode(
        "", help="notebooks copied into a home where missing (e.g. the first-cohort one)"
    ).tag(config=True)

    def _account(self) -> str:
        return accounts.account_name(self.user.name)

    def make_preexec_fn(self, name: str) -> Any:
        return set_user_setuid(self._account())

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        entry = pwd.getpwnam(self._account())
        env["USER"] = entry.pw_name
        env["HOME"] = entry.pw_dir
        env["SHELL"] = entry.pw_shell
        return env

    async def start(self) -> Any:
        entry = await asyncio.to_thread(accounts.ensure, Path(self.homes_dir), self.user.name)
        if self.skeleton_dir:
            await asyncio.to_thread(accounts.seed_home, entry, Path(self.skeleton_dir))
        # The notebook directory is the home, whatever the config template says.
        self.notebook_dir = entry.pw_dir
        return await super().start()

    async def move_certs(self, paths: dict[str, str]) -> dict[str, str]:
        # Internal TLS is not enabled on the local stack; the parent would look up an
        # account named after the Hub user.
        raise NotImplementedError("internal_ssl is not supported by AccountSpawner")
