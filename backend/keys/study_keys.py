"""Per-study pseudonymisation keys, kept with the member keys (outside the database),
wrapped by the same KMS. A pseudonym is an HMAC of the member id under the study's key:
stable within a study, unlinkable across studies, irreversible without the key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from pathlib import Path

from backend.keys.files import write_once
from backend.keys.kms import Kms

_STUDY = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


class StudyKeys:
    def __init__(self, root: Path, kms: Kms) -> None:
        self.root = root
        self.kms = kms
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._cache: dict[str, bytes] = {}

    def _path(self, study: str) -> Path:
        if not _STUDY.match(study):
            raise ValueError(f"not a study id: {study!r}")
        return self.root / f"{study}.json"

    def key(self, study: str) -> bytes:
        """The study's key, created on first use (atomically: concurrent first uses agree)."""
        if study in self._cache:
            return self._cache[study]
        path = self._path(study)
        context = f"study:{study}".encode()
        if not path.exists():
            fresh = secrets.token_bytes(32)
            body = json.dumps({"wrapped": self.kms.wrap(fresh, context).hex()})
            write_once(path, body.encode(), 0o600)
        wrapped = bytes.fromhex(json.loads(path.read_text())["wrapped"])
        self._cache[study] = self.kms.unwrap(wrapped, context)
        return self._cache[study]


def pseudonym(key: bytes, member: uuid.UUID) -> str:
    """`p-` and 20 base32 characters (100 bits): collision-free for any real cohort."""
    digest = hmac.new(key, member.bytes, hashlib.sha256).digest()
    return "p-" + base64.b32encode(digest).decode()[:20].lower()
