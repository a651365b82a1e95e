"""Per-member data keys, stored wrapped, in a directory apart from the zone database.

Keys live outside the database on purpose: database backups and replicas never hold
them, so restoring a backup cannot bring an erased member's data back to life. One
file per member, written once (atomically, fsynced) and removed on erasure."""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

from backend.keys.kms import KeyUnavailable, Kms


@dataclass(frozen=True)
class DataKey:
    key_id: str  # "<member uuid>/<version>": stored beside each ciphertext
    key: bytes


class KeyStore:
    def __init__(self, root: Path, kms: Kms, cache_size: int = 4096) -> None:
        self.root = root
        self.kms = kms
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Unwrapping costs a KMS call; ingest touches the same members over and over.
        self._cache: OrderedDict[uuid.UUID, DataKey] = OrderedDict()
        self._cache_size = cache_size
        self._lock = Lock()

    def _path(self, member: uuid.UUID) -> Path:
        return self.root / f"{member}.json"

    def _cached(self, member: uuid.UUID) -> DataKey | None:
        with self._lock:
            key = self._cache.get(member)
            if key is not None:
                self._cache.move_to_end(member)
            return key

    def _remember(self, member: uuid.UUID, key: DataKey) -> DataKey:
        with self._lock:
            self._cache[member] = key
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return key

    def get(self, member: uuid.UUID) -> DataKey:
        """The member's data key; KeyUnavailable if there is none (never created, or erased)."""
        cached = self._cached(member)
        if cached is not None:
            return cached
        try:
            entry = json.loads(self._path(member).read_text())
        except FileNotFoundError:
            raise KeyUnavailable(f"no data key for member {member}") from None
        wrapped = bytes.fromhex(entry["wrapped"])
        key = self.kms.unwrap(wrapped, member.bytes)
        return self._remember(member, DataKey(f"{member}/{entry['version']}", key))

    def get_or_create(self, member: uuid.UUID) -> DataKey:
        try:
            return self.get(member)
        except KeyUnavailable:
            if self.is_erased(member):
                raise
        key = secrets.token_bytes(32)
        entry = {
            "version": 1,
            "kms": self.kms.key_version,
            "wrapped": self.kms.wrap(key, member.bytes).hex(),
        }
        tmp = self.root / f".{member}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(entry, fh)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, self._path(member))
        except FileExistsError:
            # Another writer created this member's key first: theirs is the key.
            return self.get(member)
        finally:
            tmp.unlink()
        _fsync_dir(self.root)
        return self._remember(member, DataKey(f"{member}/1", key))

    def destroy(self, member: uuid.UUID) -> bool:
        """Crypto-shred: remove the member's key and leave a tombstone so it is never
        silently re-created. Returns False if there was no key."""
        with self._lock:
            self._cache.pop(member, None)
        tomb = self.root / f"{member}.erased"
        tomb.touch()
        try:
            self._path(member).unlink()
        except FileNotFoundError:
            return False
        finally:
            _fsync_dir(self.root)
        return True

    def is_erased(self, member: uuid.UUID) -> bool:
        return (self.root / f"{member}.erased").exists()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
