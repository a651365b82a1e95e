"""Hub accounts: a store of bcrypt password hashes and the JupyterHub authenticator over it.

The store is one JSON file of its own (mode 0600) holding, per user, a bcrypt hash, the
platform roles (which become Hub groups) and two timestamps; never a password. The
`rejuve users ...` CLI changes it through the functions below; the Hub reads it at every
login and every auth refresh, so a change reaches the Hub within
`Authenticator.auth_refresh_age` without a restart or a new login.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
from jupyterhub.auth import Authenticator  # type: ignore[import-untyped]
from traitlets import Unicode, default

from backend.exceptions import UserError
from backend.identity import PLATFORM_ROLES

# Lower-case so the Hub's own normalisation (lower()) is the identity on stored names;
# no '/', no leading dot, short: a name is also a URL segment, a directory name and, with
# a 4-character prefix, a system account's name (32 characters at most).
USERNAME_RE = re.compile(r"[a-z][a-z0-9._-]{0,26}[a-z0-9]")
MIN_PASSWORD_CHARS = 12
# bcrypt reads at most 72 bytes; bcrypt 5 refuses longer input instead of truncating.
MAX_PASSWORD_BYTES = 72
DEFAULT_ROUNDS = 12
_STORE_VERSION = 1


class StoreError(UserError):
    """The account store cannot be used as it is (unreadable, unsafe mode, bad content)."""


@dataclass(frozen=True)
class StoredUser:
    name: str
    groups: tuple[str, ...]
    created: str
    password_changed: str


def validate_username(name: str) -> str:
    if not USERNAME_RE.fullmatch(name):
        raise UserError(
            f"invalid user name {name!r}",
            "2-28 characters: lower-case letters, digits, '.', '_', '-'; "
            "starting with a letter, ending with a letter or digit",
        )
    return name


def validate_groups(groups: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(sorted(set(groups)))
    unknown = [g for g in chosen if g not in PLATFORM_ROLES]
    if unknown:
        raise UserError(
            f"unknown role(s): {', '.join(unknown)}",
            f"roles are: {', '.join(sorted(PLATFORM_ROLES))}",
        )
    if not chosen:
        # An account without a role could still start a notebook server: refuse it.
        raise UserError("a user needs at least one role")
    return chosen


def _validate_password(password: str) -> bytes:
    raw = password.encode()
    if len(password) < MIN_PASSWORD_CHARS:
        raise UserError(f"password too short: at least {MIN_PASSWORD_CHARS} characters")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise UserError(f"password too long: at most {MAX_PASSWORD_BYTES} bytes (UTF-8)")
    return raw


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _hash(password: str, rounds: int) -> str:
    return bcrypt.hashpw(_validate_password(password), bcrypt.gensalt(rounds)).decode()


def _read(store: Path) -> dict[str, dict[str, Any]]:
    try:
        st = store.stat()
    except FileNotFoundError:
        return {}
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        # Whoever can write here can plant a hash and log in as anyone: fail closed.
        raise StoreError(f"account store {store} is writable by group or others", "chmod 600 it")
    if st.st_mode & 0o077:
        store.chmod(0o600)
    try:
        doc = json.loads(store.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"account store {store} is unreadable: {e}") from e
    if not isinstance(doc, dict) or doc.get("version") != _STORE_VERSION:
        raise StoreError(f"account store {store} has an unknown format")
    users = doc.get("users")
    if not isinstance(users, dict) or not all(isinstance(e, dict) for e in users.values()):
        raise StoreError(f"account store {store} has an unknown format")
    return users


def _write(store: Path, users: dict[str, dict[str, Any]]) -> None:
    fd, tmp = tempfile.mkstemp(dir=store.parent, prefix=f".{store.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump({"version": _STORE_VERSION, "users": users}, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        # The Hub reads without the lock: a rename is what makes that safe.
        Path(tmp).replace(store)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _locked(store: Path) -> Iterator[dict[str, dict[str, Any]]]:
    """Read-modify-write under an exclusive lock: two CLI runs must not lose an update."""
    store.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = store.with_name(f".{store.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        users = _read(store)
        yield users
        _write(store, users)
    finally:
        os.close(fd)


def _stored(name: str, entry: dict[str, Any]) -> StoredUser:
    return StoredUser(
        name=name,
        groups=tuple(entry.get("groups", ())),
        created=str(entry.get("created", "")),
        password_changed=str(entry.get("password_changed", "")),
    )


def add_user(
    store: Path,
    name: str,
    password: str,
    groups: Iterable[str] = ("member",),
    *,
    rounds: int = DEFAULT_ROUNDS,
) -> StoredUser:
    validate_username(name)
    chosen = validate_groups(groups)
    hashed = _hash(password, rounds)
    now = _now()
    with _locked(store) as users:
        if name in users:
            raise UserError(f"user {name} exists", "use set-password or set-groups")
        users[name] = {
            "hash": hashed,
            "groups": list(chosen),
            "created": now,
            "password_changed": now,
        }
        return _stored(name, users[name])


def set_password(store: Path, name: str, password: str, *, rounds: int = DEFAULT_ROUNDS) -> None:
    hashed = _hash(password, rounds)
    with _locked(store) as users:
        if name not in users:
            raise UserError(f"no user {name}")
        users[name]["hash"] = hashed
        users[name]["password_changed"] = _now()


def set_groups(store: Path, name: str, groups: Iterable[str]) -> StoredUser:
    chosen = validate_groups(groups)
    with _locked(store) as users:
        if name not in users:
            raise UserError(f"no user {name}")
        users[name]["groups"] = list(chosen)
        return _stored(name, users[name])


def remove_user(store: Path, name: str) -> None:
    """The Hub keeps its own record of the user; with the `auth_refresh_strict` setting in
    deploy/jupyterhub the user's cookies and tokens stop working at the next refresh."""
    with _locked(store) as users:
        if users.pop(name, None) is None:
            raise UserError(f"no user {name}")


def list_users(store: Path) -> list[StoredUser]:
    return [_stored(n, e) for n, e in sorted(_read(store).items())]


def lookup(store: Path, name: str) -> StoredUser | None:
    entry = _read(store).get(name)
    return None if entry is None else _stored(name, entry)


@dataclass(frozen=True)
class StoreDirectory:
    """The account store as a directory of people and their platform roles."""

    store: Path

    def roles_of(self, name: str) -> frozenset[str] | None:
        user = lookup(self.store, name)
        return None if user is None else frozenset(user.groups)


_dummy_hashes: dict[int, bytes] = {}


def _dummy_hash(rounds: int) -> bytes:
    if rounds not in _dummy_hashes:
        _dummy_hashes[rounds] = bcrypt.hashpw(b"no such user", bcrypt.gensalt(rounds))
    return _dummy_hashes[rounds]


def _rounds_of(hashed: str) -> int | None:
    parts = hashed.split("$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None


def verify_password(store: Path, name: str, password: str) -> StoredUser | None:
    """The user if `password` is theirs. Unknown names, malformed names and over-long
    passwords cost one bcrypt check too, at the cost the store uses, so the answer's
    timing does not tell which names exist."""
    users = _read(store)
    entry = users.get(name) if USERNAME_RE.fullmatch(name) else None
    hashed = entry.get("hash") if entry is not None else None
    raw = password.encode()
    if entry is None or not isinstance(hashed, str) or _rounds_of(hashed) is None:
        costs = (_rounds_of(str(e.get("hash", ""))) for e in users.values())
        rounds = next((c for c in costs if c is not None), DEFAULT_ROUNDS)
        bcrypt.checkpw(raw[:MAX_PASSWORD_BYTES], _dummy_hash(rounds))
        return None
    ok = bcrypt.checkpw(raw[:MAX_PASSWORD_BYTES], hashed.encode())
    # Longer passwords are refused at set time, so matching on the first 72 bytes of one
    # is not a match.
    if not ok or len(raw) > MAX_PASSWORD_BYTES:
        return None
    return _stored(name, entry)


class RejuveAuthenticator(Authenticator):  # type: ignore[misc]
    """Username and password against the account store; platform roles as Hub groups."""

    user_store = Unicode(
        config=True, help="Path of the account store (JSON, mode 0600) that the CLI manages."
    )

    @default("allow_all")
    def _allow_all_default(self) -> bool:
        # Only people in the store can authenticate at all: the store is the allow list.
        return True

    @default("manage_groups")
    def _manage_groups_default(self) -> bool:
        # Every auth model below carries `groups`, which the Hub then makes authoritative.
        return True

    @property
    def _store(self) -> Path:
        if not self.user_store:
            raise StoreError("RejuveAuthenticator.user_store is not configured")
        return Path(self.user_store)

    def validate_username(self, username: str) -> bool:
        return bool(super().validate_username(username)) and bool(USERNAME_RE.fullmatch(username))

    def _auth_model(self, user: StoredUser) -> dict[str, Any]:
        # An explicit False (not None) revokes admin from someone dropped from admin_users.
        return {
            "name": user.name,
            "groups": list(user.groups),
            "admin": user.name in self.admin_users,
        }

    async def authenticate(self, handler: Any, data: Any) -> dict[str, Any] | None:
        # `data` is the login form, or whatever JSON a token request sent as `auth`.
        if not isinstance(data, dict):
            return None
        name, password = data.get("username"), data.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            return None
        name = self.normalize_username(name.strip())
        try:
            # A bcrypt check takes a good part of a second by design: off the event loop.
            user = await asyncio.to_thread(verify_password, self._store, name, password)
        except StoreError as e:
            self.log.error("login refused, account store unusable: %s", e)
            return None
        if user is None:
            return None
        return self._auth_model(user)

    async def refresh_user(self, user: Any, handler: Any = None) -> bool | dict[str, Any]:
        try:
            stored = await asyncio.to_thread(lookup, self._store, user.name)
        except StoreError as e:
            self.log.error("cannot refresh %s, account store unusable: %s", user.name, e)
            return False
        if stored is None:
            self.log.warning("user %s is no longer in the account store", user.name)
            return False
        return self._auth_model(stored)
