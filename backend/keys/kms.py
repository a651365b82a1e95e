"""The KMS interface and its local implementation.

Production swaps `LocalKms` for a real KMS (Vault Transit, a cloud KMS) behind the same
two calls; nothing else in the platform sees the master key."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12


class KeyUnavailable(Exception):
    """A key cannot be used: destroyed (erased member), tampered with, or the wrong master."""


class Kms(Protocol):
    key_version: str

    def wrap(self, data_key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...


class LocalKms:
    """AES-256-GCM key wrapping with a master key kept in a 0600 file.

    The `context` (the member id) is authenticated data: a wrapped key copied onto
    another member's entry does not unwrap."""

    def __init__(self, master_key: bytes, key_version: str = "local-v1") -> None:
        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._aead = AESGCM(master_key)
        self.key_version = key_version

    @classmethod
    def from_file(cls, path: Path) -> LocalKms:
        """Load the master key, creating it (once, atomically) if it does not exist."""
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # fails if another process won the race: use theirs
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return cls(path.read_bytes())

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], context)
        except InvalidTag:
            raise KeyUnavailable("wrapped key does not verify under this master key") from None
