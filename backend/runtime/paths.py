"""Where the platform's state lives under its home directory: paths only, nothing made.

The local stack (`backend.stack.layout.Layout`) adds to these what provisioning needs
(making directories, logs, pid files); reading code needs only the paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HomePaths:
    home: Path
    # A secrets file elsewhere (REJUVE_SECRETS_FILE, e.g. a mounted secret in production).
    secrets_override: Path | None = None

    @property
    def tls(self) -> Path:
        return self.home / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.tls / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.tls / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.tls / "server.key"

    @property
    def secrets_file(self) -> Path:
        return self.secrets_override or self.home / "secrets.json"

    @property
    def keys(self) -> Path:
        """Wrapped per-member data keys: outside the database and its backups."""
        return self.home / "keys"

    @property
    def master_key(self) -> Path:
        """The local KMS's master key, in a directory of its own."""
        return self.home / "kms" / "master.key"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def log_file(self, name: str) -> Path:
        """A service's log (the stack writes them; operators and tests read them)."""
        return self.logs / f"{name}.log"

    @property
    def run(self) -> Path:
        return self.home / "run"

    def service_dir(self, name: str) -> Path:
        return self.home / name
