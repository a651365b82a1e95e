"""Typed settings, read from the environment (prefix ``REJUVE_``) at entry points only.

Library code never reads ``os.environ``: entry points build a :class:`Settings`
and pass it (or what is derived from it) down.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_home() -> Path:
    # State lives outside the checkout because PostgreSQL runs as an unprivileged user
    # and must traverse every parent directory; a clone in `mktemp -d` (mode 0700)
    # would lock it out. One home per checkout keeps clones from sharing clusters.
    checkout = hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:10]
    return Path("/var/lib/rejuve/stacks") / checkout


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REJUVE_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    home: Path = Field(default_factory=_default_home)
    region: str = "local"

    # Point the platform at existing servers instead of provisioning local ones.
    # The database URL is the migration owner's; application roles get their own
    # generated passwords, set by the owner during migration.
    database_url: SecretStr | None = None
    prefect_database_url: SecretStr | None = None
    redis_url: SecretStr | None = None
    ca_file: Path | None = None
    # Generated credentials (default: <home>/secrets.json); read, never created, except by
    # the local stack that generates them.
    secrets_file: Path | None = None

    db_name: str = "rejuve"
    pg_port: int = 54329
    redis_port: int = 6380
    prefect_port: int = 4200
    backend_port: int = 8443
    hub_port: int = 8444
    hub_api_port: int = 8446
    hub_proxy_api_port: int = 8447
    hub_admin_users: str = ""  # comma-separated Hub admins
    # The coach app (Panel) listens here; people reach it through the Hub's proxy at
    # <hub>/services/coach/.
    coach_port: int = 8448
    max_batch_bytes: int = 8 * 1024 * 1024
    # Governed routes: bodies (cohort criteria, consent, grants) are small; 413/414 above.
    max_request_bytes: int = 64 * 1024
    max_query_bytes: int = 8 * 1024
    # Per person (Hub identity), shared by every backend worker through Redis: at most
    # `burst` requests in any ceil(burst / per_second) seconds (a moving window).
    rate_limit_per_second: float = 20.0
    rate_limit_burst: float = 40.0
    # Requests without a valid token, per client address (same semantics).
    rate_limit_anonymous_per_second: float = 20.0
    rate_limit_anonymous_burst: float = 100.0
    # Backend worker processes; 0: one per core.
    backend_workers: int = 0
    drop_dir: Path | None = None  # default: <home>/dropbox
    drop_interval_seconds: int = 30
    # Feast online store refresh from the feature queue (the `materialise-features` flow).
    features_interval_seconds: int = 30
    # Coaching alerts from the daily summaries (the `detect-alerts` flow).
    alerts_interval_seconds: int = 300
    # Refining is CPU-bound Python: one process per core keeps up with the API.
    refiner_workers: int = 2
    # A batch that fails this many times is dead-lettered (kept in raw, never retried on
    # its own); one that takes longer than the time limit is dead-lettered at once.
    refine_max_attempts: int = 3
    refine_time_limit_seconds: float = 300.0
    # ... plus this much per MiB the batch landed as: a member-year of one-second heart
    # rate (a 143 MB Fitbit zip) takes ~20 min, and must not be dead-lettered for its size.
    # The cost of one input stays bounded, by its size, which the door bounds.
    refine_seconds_per_mib: float = 20.0
    # Days each zone keeps (0: for ever), never below the minimum (backend/analytics/retention.py).
    retention_raw_days: int = 0
    retention_processed_days: int = 0
    retention_hourly_days: int = 0
    retention_daily_days: int = 0
    retention_minimum_days: int = 0

    def retention_days(self) -> dict[str, int]:
        return {
            "raw": self.retention_raw_days,
            "processed": self.retention_processed_days,
            "hourly": self.retention_hourly_days,
            "daily": self.retention_daily_days,
        }

    pg_tree: Path = Path("/opt/rejuve/pg17-trixie")
    service_user: str = "rejuve-svc"

    log_level: str = "INFO"
    log_json: bool = False
