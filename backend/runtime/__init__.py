"""The platform's composition root: settings -> access to the database, Redis, Prefect,
the Hub, the key store and the CA file. It only reads.

Nothing here makes a directory or a file: the secrets file is read, never generated, and
a key store that is not there is an error, not a new one. Provisioning those belongs to
the local stack (`backend.stack.context.StackContext`, built on top of this); flows, the
Alembic environment, the backend, the CLI's data commands and the tests use a `Runtime`.
With REJUVE_DATABASE_URL, REJUVE_REDIS_URL and REJUVE_CA_FILE nothing of the local stack
is touched."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Self

from backend.db.access import DatabaseAccess
from backend.db.roles import PREFECT_DB, PREFECT_ROLE
from backend.exceptions import SetupError
from backend.runtime import secrets_file
from backend.runtime.access import REDIS_USER, HubAccess, PrefectAccess, RedisAccess
from backend.runtime.paths import HomePaths

if TYPE_CHECKING:
    from backend.keys.keystore import KeyStore
    from backend.keys.kms import LocalKms
    from backend.settings import Settings

_START_STACK = "start the local stack once with `rejuve up` (it generates them)"


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    layout: HomePaths
    secrets: Mapping[str, str] = field(repr=False)
    db: DatabaseAccess

    @classmethod
    def from_env(cls) -> Self:
        from backend.settings import Settings

        return cls.from_settings(Settings())

    @classmethod
    def from_settings(cls, s: Settings) -> Self:
        layout = HomePaths(s.home, s.secrets_file)
        return cls.assemble(s, layout, secrets_file.read(layout.secrets_file))

    @classmethod
    def assemble(cls, s: Settings, layout: HomePaths, secrets: Mapping[str, str]) -> Self:
        """The runtime over paths and secrets someone already has (the local stack's)."""
        pw = {k.removeprefix("pg_"): v for k, v in secrets.items() if k.startswith("pg_")}
        if s.database_url is not None:
            db = DatabaseAccess.from_owner_url(s.database_url.get_secret_value(), s.ca_file, pw)
        else:
            db = DatabaseAccess("127.0.0.1", s.pg_port, s.db_name, layout.ca_cert, pw)
        return cls(s, layout, secrets, db)

    def secret(self, name: str, instead: str | None = None) -> str:
        try:
            return self.secrets[name]
        except KeyError:
            hint = _START_STACK + (f", or set {instead}" if instead else "")
            raise SetupError(f"no '{name}' secret in {self.layout.secrets_file}", hint) from None

    @property
    def external_db(self) -> bool:
        return self.settings.database_url is not None

    @property
    def external_redis(self) -> bool:
        return self.settings.redis_url is not None

    @property
    def ca_file(self) -> Path:
        """The CA that signs the servers' certificates: the configured one, or the stack's."""
        return self.settings.ca_file or self.layout.ca_cert

    @cached_property
    def redis(self) -> RedisAccess:
        s = self.settings
        if s.redis_url is not None:
            return RedisAccess.from_url(s.redis_url.get_secret_value(), s.ca_file)
        return RedisAccess(
            "127.0.0.1",
            s.redis_port,
            self.layout.ca_cert,
            REDIS_USER,
            self.secret("redis", "REJUVE_REDIS_URL"),
        )

    @cached_property
    def prefect(self) -> PrefectAccess:
        s = self.settings
        if s.prefect_database_url is not None:
            prefect_db = s.prefect_database_url.get_secret_value()
        else:
            prefect_db = (
                f"postgresql+asyncpg://{PREFECT_ROLE}:{self.secret('pg_prefect')}"
                f"@{self.db.host}:{self.db.port}/{PREFECT_DB}"
            )
        return PrefectAccess(
            s.prefect_port,
            self.layout.ca_cert,
            self.layout.service_dir("prefect"),
            prefect_db,
            f"rejuve:{self.secret('prefect_api')}",
        )

    @cached_property
    def hub(self) -> HubAccess:
        s = self.settings
        return HubAccess(
            port=s.hub_port,
            api_port=s.hub_api_port,
            proxy_api_port=s.hub_proxy_api_port,
            state=self.layout.service_dir("jupyterhub"),
            ca_file=self.layout.ca_cert,
            backend_token=self.secret("hub_backend"),
            admin_users=s.hub_admin_users,
        )

    def kms(self) -> LocalKms:
        from backend.keys.kms import LocalKms

        path = self.layout.master_key
        try:
            return LocalKms(path.read_bytes())
        except FileNotFoundError:
            raise SetupError(f"no master key at {path}", _START_STACK) from None

    def keystore(self) -> KeyStore:
        from backend.keys.keystore import KeyStore

        if not self.layout.keys.is_dir():
            raise SetupError(f"no key store at {self.layout.keys}", _START_STACK)
        return KeyStore(self.layout.keys, self.kms())

    @property
    def drop_dir(self) -> Path:
        return self.settings.drop_dir or self.layout.home / "dropbox"

    @property
    def backend_url(self) -> str:
        return f"https://127.0.0.1:{self.settings.backend_port}"
