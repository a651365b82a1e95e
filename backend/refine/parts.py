"""A read-only, seekable file over a batch's encrypted parts, decrypting on demand.

Parsers stream from it as from a file; zip archives seek in it. Only the part being
read is held in memory (plus the last one, for zip's back-and-forth), so a multi-GB
export refines in flat memory."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable

from backend.keys import envelope
from backend.keys.keystore import KeyStore

PartFetcher = Callable[[int], tuple[uuid.UUID, bytes]]  # part_no -> (record id, ciphertext)


class PartsReader(io.RawIOBase):
    def __init__(
        self, fetch: PartFetcher, part_size: int, total: int, member: uuid.UUID, keys: KeyStore
    ) -> None:
        self._fetch = fetch
        self._part_size = part_size
        self._total = total
        self._member = member
        self._keys = keys
        self._pos = 0
        self._cache: dict[int, bytes] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._total}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _part(self, n: int) -> bytes:
        if n not in self._cache:
            record_id, sealed = self._fetch(n)
            key = self._keys.get(self._member)
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[n] = envelope.open_sealed(key.key, sealed, record_id, self._member)
        return self._cache[n]

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._pos >= self._total:
            return 0
        n, within = divmod(self._pos, self._part_size)
        chunk = self._part(n)[within : within + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)
