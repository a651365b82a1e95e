"""The local stack on top of the runtime: what provisioning adds (directories, generated
secrets, the master key) and the services it supervises.

`backend.runtime.Runtime` only reads; `StackContext.from_settings` is the one place that
creates the stack's home, its secrets file and its key store, for `rejuve up` and the
stack's own commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from backend.db.access import DatabaseAccess
from backend.exceptions import SetupError
from backend.keys.kms import LocalKms
from backend.runtime import Runtime
from backend.runtime.access import RedisAccess
from backend.settings import Settings
from backend.stack import secrets_store, system
from backend.stack.coach_server import CoachServer
from backend.stack.hub_server import SERVICE, HubServer
from backend.stack.layout import Layout
from backend.stack.prefect_server import PrefectServer
from backend.stack.python_service import PythonService
from backend.stack.redis_server import RedisServer
from backend.stack.service import Service, ServiceStatus
from backend.stack.timescaledb import TimescaleDB


@dataclass(frozen=True)
class ExternalService:
    """A server someone else runs (REJUVE_DATABASE_URL / REJUVE_REDIS_URL): we only probe it."""

    name: str
    url: str
    probe: object

    def start(self) -> None:
        if not self.healthy():
            raise SetupError(f"external {self.name} at {self.url} does not answer")

    def stop(self) -> None:
        return None

    def healthy(self) -> bool:
        return bool(self.probe())  # type: ignore[operator]

    def status(self) -> ServiceStatus:
        return ServiceStatus(
            self.name, "external" if self.healthy() else "down", self.url, None, None
        )


@dataclass(frozen=True)
class StackContext(Runtime):
    layout: Layout

    @classmethod
    def from_settings(cls, s: Settings) -> Self:
        """Provision what the stack keeps in its home (idempotent), then read it."""
        layout = Layout(s.home, s.secrets_file)
        layout.ensure()
        secrets = secrets_store.load_or_create(layout.secrets_file)
        # The runtime refuses a missing key store rather than make an empty one: this is
        # where it is made, once.
        LocalKms.from_file(layout.master_key)
        layout.keys.mkdir(mode=0o700, exist_ok=True)
        return cls.assemble(s, layout, secrets)

    def services(self) -> list[Service]:
        """In start order; stopped in reverse."""
        s = self.settings
        tsdb: Service
        if self.external_db:
            tsdb = ExternalService(
                "timescaledb",
                f"postgresql://{self.db.host}:{self.db.port}/{self.db.dbname}",
                lambda: _db_answers(self.db),
            )
        else:
            tsdb = TimescaleDB(self.layout, self.db, s.pg_tree, s.service_user)
        red: Service
        if self.external_redis:
            red = ExternalService(
                "redis", self.redis.display_url, lambda: _redis_answers(self.redis)
            )
        else:
            red = RedisServer(self.layout, self.redis, s.service_user)
        refiner = PythonService("refiner", self.layout, ["refiner-run"], url="LISTEN raw_landed")
        rollups = PythonService(
            "rollups", self.layout, ["rollups-run"], url="analytics.rollup_dirty"
        )
        backend = PythonService(
            "backend",
            self.layout,
            ["backend-run"],
            url=self.backend_url,
            healthy=self._backend_answers,
        )
        flows = PythonService(
            "flows",
            self.layout,
            ["flows-run"],
            url=f"{self.prefect.ui_url}/deployments",
            env=self.prefect.client_env(),
            healthy=self._flows_served,
        )
        # Before the Hub: the Hub waits for its services to answer when it starts.
        coach = CoachServer(
            self.layout, self.hub, self.backend_url, SERVICE, s.coach_port, self.secrets
        )
        hub = HubServer(self.layout, self.hub, self.backend_url, coach.config)
        prefect = PrefectServer(self.layout, self.prefect)
        return [tsdb, red, prefect, refiner, rollups, backend, coach, hub, flows]

    def _flows_served(self) -> bool:
        deployment = f"{self.prefect.api_url}/deployments/name/drop-folder/drop-folder"
        # Prefect answers this query slowly on a loaded machine: more time than a /health.
        return system.https_ok(
            deployment, self.layout.ca_cert, timeout=10, auth=self.prefect.basic_auth
        )

    def _backend_answers(self) -> bool:
        return system.https_ok(f"{self.backend_url}/healthz", self.layout.ca_cert)


def _db_answers(db: DatabaseAccess) -> bool:
    import psycopg

    try:
        with db.connect("owner", connect_timeout=3) as conn:
            return conn.execute("select 1").fetchone() == (1,)
    except psycopg.Error:
        return False


def _redis_answers(access: RedisAccess) -> bool:
    import redis

    try:
        return bool(access.client(socket_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False
