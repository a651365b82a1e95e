"""JupyterHub spawner for the local stack: each person's notebook server runs as their own
unprivileged system account (accounts.py), from the runtime under /opt/rejuve
(notebook_runtime.py), in a private home.

JupyterHub's LocalProcessSpawner expects the system account to carry the Hub user's name;
ours are prefixed so they cannot collide with, or be, an existing system user (a Hub user
called `postgres` or `root` must not become that account).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
from pathlib import Path
from typing import Any

from jupyterhub.spawner import (  # type: ignore[import-untyped]
    LocalProcessSpawner,
    set_user_setuid,
)
from tornado import web
from traitlets import Unicode

from backend.identity import PLATFORM_ROLES, accounts

# Where the platform's notebooks go in a home, as README.md tells researchers.
NOTEBOOKS = "notebooks"
# Where a coach works: the coach app, proxied by the Hub (deploy/jupyterhub/).
COACH_APP = "/services/coach/"


def coach_only(groups: set[str] | frozenset[str]) -> bool:
    """A coach with no other platform role: their work is the coach app; a notebook
    would give them nothing the backend lets a coach read (and the researcher's one a 403)."""
    return "coach" in groups and not groups & (PLATFORM_ROLES - {"coach"})


def _groups(user: Any) -> set[str]:
    return {g.name for g in getattr(user, "groups", None) or ()}


def landing_url(handler: Any) -> str:
    """JupyterHub's `default_url` (a callable): coaches land in the coach app; everyone
    else gets the Hub's default (their notebook server)."""
    user = handler.current_user
    if user is not None and coach_only(_groups(user)):
        return str(handler.base_url).rstrip("/") + COACH_APP
    return ""


def seed_notebooks(entry: pwd.struct_passwd, skeleton: Path) -> list[str]:
    """Copy the platform's notebooks into `~/notebooks/` where they are missing (never over
    the person's own copy); returns the home-relative paths copied."""
    home = Path(entry.pw_dir)
    folder = home / NOTEBOOKS
    copied = []
    for source in sorted(skeleton.glob("*.ipynb")):
        if not folder.exists():
            folder.mkdir(mode=0o700)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        target = folder / source.name
        # A copy made where notebooks used to go (the home itself) counts as theirs.
        if target.exists() or (home / source.name).exists():
            continue
        shutil.copyfile(source, target)
        os.chown(target, entry.pw_uid, entry.pw_gid)
        target.chmod(0o600)
        copied.append(f"{NOTEBOOKS}/{source.name}")
    return copied


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
        if coach_only(_groups(self.user)):
            refusal = web.HTTPError(403, "coaches get no notebook server")
            # What the Hub's error page shows (instead of "contact admin").
            refusal.jupyterhub_html_message = (  # type: ignore[attr-defined]
                f"Coaches work in the <a href='{COACH_APP}'>coach app</a>, not in a notebook"
                " server."
            )
            raise refusal
        entry = await asyncio.to_thread(accounts.ensure, Path(self.homes_dir), self.user.name)
        # The spawner outlives a server: each start begins from the configured page.
        # (getattr: the trait comes from an untyped base that mypy cannot see into)
        configured = getattr(self, "_configured_url", None) or str(getattr(self, "default_url"))  # noqa: B009
        self._configured_url = configured
        self.default_url = configured
        if self.skeleton_dir:
            copied = await asyncio.to_thread(seed_notebooks, entry, Path(self.skeleton_dir))
            if copied:
                # A new person lands in their first notebook, not on the Launcher; later
                # starts reopen whatever JupyterLab's workspace remembers.
                self.default_url = f"/lab/tree/{copied[0]}"
        # The notebook directory is the home, whatever the config template says.
        self.notebook_dir = entry.pw_dir
        return await super().start()

    async def move_certs(self, paths: dict[str, str]) -> dict[str, str]:
        # Internal TLS is not enabled on the local stack; the parent would look up an
        # account named after the Hub user.
        raise NotImplementedError("internal_ssl is not supported by AccountSpawner")
