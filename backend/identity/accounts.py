"""Unprivileged system accounts that people's notebook servers run as.

A notebook runs whatever code its owner types, so it must not run as the Hub's user
(root on the local stack): as root it could read the stack's secrets, the member data
keys and other people's notebooks. Each Hub user gets a system account of their own,
`rjv-<hub name>`, with a private home; the account has no password and no groups besides
its own, so it can reach the platform only as its owner can: through the backend with the
Hub token its server is given.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from backend.exceptions import SetupError

PREFIX = "rjv-"
# useradd's limit; the Hub's user names are at most 28 characters (hub_auth.USERNAME_RE).
MAX_NAME = 32


def account_name(hub_user: str) -> str:
    name = PREFIX + hub_user
    if len(name) > MAX_NAME:
        raise SetupError(f"Hub user name too long for a system account: {len(hub_user)} chars")
    return name


def home_of(homes: Path, hub_user: str) -> Path:
    return homes / account_name(hub_user)


def ensure(homes: Path, hub_user: str) -> pwd.struct_passwd:
    """The account and its 0700 home, created on first use (idempotent). Root only."""
    name = account_name(hub_user)
    home = home_of(homes, hub_user)
    # Homes' parent: others may enter (to reach their own home) but not list it.
    homes.mkdir(mode=0o711, parents=True, exist_ok=True)
    homes.chmod(0o711)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        done = subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                str(home),
                # A shell for JupyterLab's terminal: it gives nothing a kernel does not.
                "--shell",
                "/bin/bash",
                "--comment",
                "Rejuve notebook account",
                name,
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SetupError(f"could not create the account {name}", done.stderr.strip()) from None
        entry = pwd.getpwnam(name)
    home = Path(entry.pw_dir)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    home.chmod(0o700)
    return entry


def remove(hub_user: str) -> bool:
    """Delete the account and its home (the person's notebooks go with them)."""
    name = account_name(hub_user)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return False
    userdel = shutil.which("userdel") or "/usr/sbin/userdel"
    done = subprocess.run([userdel, name], capture_output=True, text=True)
    if done.returncode != 0:
        raise SetupError(f"could not remove the account {name}", done.stderr.strip())
    shutil.rmtree(entry.pw_dir, ignore_errors=True)
    return True


def seed_home(entry: pwd.struct_passwd, skeleton: Path) -> list[str]:
    """Copy the platform's notebooks into a home where they are missing (never over the
    person's own copy); returns what was copied."""
    copied = []
    home = Path(entry.pw_dir)
    for source in sorted(skeleton.glob("*.ipynb")):
        target = home / source.name
        if target.exists():
            continue
        shutil.copyfile(source, target)
        os.chown(target, entry.pw_uid, entry.pw_gid)
        target.chmod(0o600)
        copied.append(source.name)
    return copied
