"""How to reach Redis, Prefect and JupyterHub: addresses and credentials, no connections
made until asked. (The database's counterpart is `backend.db.access.DatabaseAccess`.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from backend.exceptions import SetupError

if TYPE_CHECKING:
    import redis

REDIS_USER = "rejuve"


@dataclass(frozen=True)
class RedisAccess:
    host: str
    port: int
    ca_file: Path
    username: str
    password: str = field(repr=False)
    db: int = 0

    @property
    def url(self) -> str:
        return f"rediss://{self.username}:{self.password}@{self.host}:{self.port}/{self.db}"

    @property
    def display_url(self) -> str:
        return f"rediss://{self.host}:{self.port}/{self.db}"

    def client(self, **kw: object) -> redis.Redis:
        import redis  # heavy (asyncio client and all): only for code that talks to Redis

        return redis.Redis.from_url(self.url, ssl_ca_certs=str(self.ca_file), **kw)

    @classmethod
    def from_url(cls, url: str, ca_file: Path | None) -> RedisAccess:
        import redis

        parsed = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
        if not url.startswith("rediss://"):
            raise SetupError("REJUVE_REDIS_URL must use TLS (rediss://)")
        if ca_file is None:
            raise SetupError("REJUVE_REDIS_URL needs REJUVE_CA_FILE to verify the server")
        return cls(
            host=str(parsed.get("host", "localhost")),
            port=int(parsed.get("port", 6379)),
            ca_file=ca_file,
            username=str(parsed.get("username") or "default"),
            password=str(parsed.get("password") or ""),
            db=int(parsed.get("db", 0)),
        )


@dataclass(frozen=True)
class PrefectAccess:
    port: int
    ca_file: Path
    home: Path
    database_url: str = field(repr=False)
    # HTTP basic auth on the API: every local account can reach 127.0.0.1:<port>, notebook
    # accounts included, and flow runs' parameters name files and members.
    auth_string: str = field(repr=False, default="")

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def basic_auth(self) -> tuple[str, str]:
        user, _, password = self.auth_string.partition(":")
        return user, password

    def client_env(self) -> dict[str, str]:
        """Environment for anything that talks to this Prefect server (flows, workers, CLI)."""
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_API_SSL_CERT_FILE": str(self.ca_file),
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_AUTH_STRING": self.auth_string,
        }

    def server_env(self) -> dict[str, str]:
        return {
            **self.client_env(),
            "PREFECT_UI_API_URL": self.api_url,
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": self.database_url,
            # Without these, asyncpg uses TLS but does not verify the server certificate.
            "PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_TLS_ENABLED": "true",
            "PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_TLS_CA_FILE": str(self.ca_file),
            "PREFECT__SERVER_FINAL": "1",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_API_AUTH_STRING": self.auth_string,
        }


@dataclass(frozen=True)
class HubAccess:
    port: int
    api_port: int
    proxy_api_port: int
    state: Path
    ca_file: Path
    backend_token: str = field(repr=False)
    admin_users: str = ""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/hub/api"

    @property
    def user_store(self) -> Path:
        return self.state / "hub-users.json"

    @property
    def token_file(self) -> Path:
        return self.state / "backend.token"
