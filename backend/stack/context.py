"""The composition root of the local stack: settings -> paths, secrets, access, services."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.db.access import DatabaseAccess
from backend.db.roles import PREFECT_DB, PREFECT_ROLE
from backend.exceptions import SetupError
from backend.keys.keystore import KeyStore
from backend.keys.kms import LocalKms
from backend.settings import Settings
from backend.stack import secrets_store, system
from backend.stack.hub_server import HubAccess, HubServer
from backend.stack.layout import Layout
from backend.stack.prefect_server import PrefectAccess, PrefectServer
from backend.stack.python_service import PythonService
from backend.stack.redis_server import REDIS_USER, RedisAccess, RedisServer
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
class StackContext:
    settings: Settings
    layout: Layout
    secrets: dict[str, str]
    db: DatabaseAccess
    redis: RedisAccess
    prefect: PrefectAccess

    @classmethod
    def from_env(cls) -> StackContext:
        return cls.from_settings(Settings())

    @classmethod
    def from_settings(cls, s: Settings) -> StackContext:
        layout = Layout(s.home)
        layout.ensure()
        secrets = secrets_store.load_or_create(layout.secrets_file)
        pw = {k.removeprefix("pg_"): v for k, v in secrets.items() if k.startswith("pg_")}
        if s.database_url is not None:
            db = DatabaseAccess.from_owner_url(s.database_url.get_secret_value(), s.ca_file, pw)
        else:
            db = DatabaseAccess("127.0.0.1", s.pg_port, s.db_name, layout.ca_cert, pw)
        if s.redis_url is not None:
            redis = RedisAccess.from_url(s.redis_url.get_secret_value(), s.ca_file)
        else:
            redis = RedisAccess(
                "127.0.0.1", s.redis_port, layout.ca_cert, REDIS_USER, secrets["redis"]
            )
        if s.prefect_database_url is not None:
            prefect_db = s.prefect_database_url.get_secret_value()
        else:
            prefect_db = (
                f"postgresql+asyncpg://{PREFECT_ROLE}:{secrets['pg_prefect']}"
                f"@{db.host}:{db.port}/{PREFECT_DB}"
            )
        prefect = PrefectAccess(
            s.prefect_port,
            layout.ca_cert,
            layout.service_dir("prefect"),
            prefect_db,
            f"rejuve:{secrets['prefect_api']}",
        )
        return cls(s, layout, secrets, db, redis, prefect)

    @property
    def external_db(self) -> bool:
        return self.settings.database_url is not None

    @property
    def external_redis(self) -> bool:
        return self.settings.redis_url is not None

    def kms(self) -> LocalKms:
        return LocalKms.from_file(self.layout.master_key)

    def keystore(self) -> KeyStore:
        return KeyStore(self.layout.keys, self.kms())

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
        hub = HubServer(self.layout, self.hub, self.backend_url)
        return [tsdb, red, PrefectServer(self.layout, self.prefect), refiner, backend, hub, flows]

    @property
    def hub(self) -> HubAccess:
        s = self.settings
        return HubAccess(
            port=s.hub_port,
            api_port=s.hub_api_port,
            proxy_api_port=s.hub_proxy_api_port,
            state=self.layout.service_dir("jupyterhub"),
            ca_file=self.layout.ca_cert,
            backend_token=self.secrets["hub_backend"],
            admin_users=s.hub_admin_users,
        )

    def _flows_served(self) -> bool:
        deployment = f"{self.prefect.api_url}/deployments/name/drop-folder/drop-folder"
        # Prefect answers this query slowly on a loaded machine: more time than a /health.
        return system.https_ok(
            deployment, self.layout.ca_cert, timeout=10, auth=self.prefect.basic_auth
        )

    @property
    def drop_dir(self) -> Path:
        return self.settings.drop_dir or self.layout.home / "dropbox"

    @property
    def backend_url(self) -> str:
        return f"https://127.0.0.1:{self.settings.backend_port}"

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
