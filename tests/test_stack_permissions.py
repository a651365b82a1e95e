"""Notebook accounts are local users: nothing of the stack's may be readable by them
except the certificates they need to trust our servers."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from backend.identity import accounts
from backend.stack.context import StackContext

# What any local account may read: public certificates.
PUBLIC = {"tls/ca.crt", "tls/server.crt"}


def _open_to_others(home: Path) -> set[str]:
    """Files and directories another local account could read (or list), given that it
    must be able to traverse every directory on the way."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(home):
        here = Path(dirpath)
        mode = here.stat().st_mode
        if here != home and mode & stat.S_IROTH:
            found.add(str(here.relative_to(home)))
        if not mode & stat.S_IXOTH:
            dirnames[:] = []  # nothing below is reachable by others
            continue
        if here == home:
            # People's own notebook homes: checked separately.
            dirnames[:] = [d for d in dirnames if d != "notebooks"]
        for name in filenames:
            st = (here / name).lstat()
            if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_IROTH:
                found.add(str((here / name).relative_to(home)))
    return found


def test_stack_home_is_private_but_for_the_certificates(ctx: StackContext) -> None:
    home = ctx.layout.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o711
    assert _open_to_others(home) == PUBLIC
    for secret in (ctx.layout.secrets_file, ctx.layout.master_key, ctx.layout.server_key):
        assert stat.S_IMODE(secret.stat().st_mode) & 0o077 == 0, secret


def test_notebook_homes_belong_to_their_account_only(ctx: StackContext) -> None:
    homes = ctx.layout.home / "notebooks"
    name = f"perm-{secrets.token_hex(3)}"
    entry = accounts.ensure(homes, name)  # what the Hub's spawner does at a first login
    try:
        assert stat.S_IMODE(homes.stat().st_mode) == 0o711
        assert entry.pw_uid != 0 and entry.pw_name == f"rjv-{name}"
        for home in homes.iterdir():
            st = home.stat()
            assert home.name.startswith("rjv-") and st.st_uid != 0
            assert stat.S_IMODE(st.st_mode) == 0o700, home
    finally:
        assert accounts.remove(name)
    assert not (homes / f"rjv-{name}").exists()
