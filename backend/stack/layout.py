"""Where the local stack keeps its state: one home directory per checkout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.runtime.paths import HomePaths

# Directories of the home others may enter; the rest are 0700.
SHARED = frozenset({"tls", "logs", "notebooks"})


@dataclass(frozen=True)
class Layout(HomePaths):
    """The runtime's paths plus what provisioning the stack makes and writes."""

    def ensure(self) -> None:
        for d in (self.home, self.logs, self.run):
            d.mkdir(parents=True, exist_ok=True)
        # Others need to traverse the home (the service user; notebook accounts to their
        # homes and the CA certificate), not list or read it. The service user opens its
        # logs by name. Everything else is private: notebook accounts are local users too.
        self.home.chmod(0o711)
        self.logs.chmod(0o711)
        self.tls.mkdir(mode=0o711, exist_ok=True)
        for child in self.home.iterdir():
            if child.is_dir() and child.name not in SHARED and child.stat().st_uid == 0:
                child.chmod(0o700)
        for log in self.logs.iterdir():
            log.chmod(log.stat().st_mode & 0o770)

    def private_dir(self, name: str) -> Path:
        """A directory of the home only the stack (root) can enter, made if missing."""
        path = self.home / name
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path
