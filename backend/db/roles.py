"""Database roles. Names carry the database name, so several databases (regions,
scratch databases in tests) can live in one cluster without sharing privileges."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Role names are spliced into DDL (roles cannot be bind parameters): only plain names.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")

SUPERUSER = "rejuve_super"
PREFECT_ROLE = "rejuve_prefect"
PREFECT_DB = "prefect"


@dataclass(frozen=True)
class Roles:
    db: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.db):
            raise ValueError(f"database name {self.db!r} must match {_NAME.pattern}")

    @property
    def owner(self) -> str:
        """Owns the schemas; runs migrations. Never used by application code."""
        return f"{self.db}_owner"

    @property
    def ingest(self) -> str:
        """Lands payloads: INSERT into the raw zone, nothing else."""
        return f"{self.db}_ingest"

    @property
    def refiner(self) -> str:
        """Reads raw, writes processed observations and quarantine."""
        return f"{self.db}_refiner"

    @property
    def query(self) -> str:
        """The backend's read role: processed and analytics zones only."""
        return f"{self.db}_query"

    @property
    def backend(self) -> str:
        """The backend's governance writer: audit (through its function), consent, policy."""
        return f"{self.db}_backend"

    @property
    def feast(self) -> str:
        """Writes the Feast registry (`rejuve features apply`): its tables, nothing else."""
        return f"{self.db}_feast"

    @property
    def features(self) -> str:
        """Feature serving: reads the Feast registry and the analytics zone's feature views,
        claims (deletes) queued member ids from `analytics.feature_dirty`."""
        return f"{self.db}_features"

    @property
    def app(self) -> dict[str, str]:
        """Application roles by short name (the keys used in the secrets file)."""
        return {
            "ingest": self.ingest,
            "refiner": self.refiner,
            "query": self.query,
            "backend": self.backend,
            "feast": self.feast,
            "features": self.features,
        }

    def by_key(self, key: str) -> str:
        return {"owner": self.owner, **self.app}[key]
