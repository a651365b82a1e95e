"""Connection strings for each role, always over TLS with the server verified."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from backend.db.roles import PREFECT_ROLE, SUPERUSER, Roles
from backend.exceptions import SetupError

if TYPE_CHECKING:
    # psycopg is imported where a connection is made: commands that only show their help,
    # or the stack's status, do not pay for it.
    import psycopg


@dataclass(frozen=True)
class DatabaseAccess:
    host: str
    port: int
    dbname: str
    ca_file: Path
    # role key ("super", "owner", "ingest", ...) -> password; never logged
    passwords: Mapping[str, str] = field(repr=False)

    @property
    def roles(self) -> Roles:
        return Roles(self.dbname)

    def user_for(self, key: str) -> str:
        special = {"super": SUPERUSER, "prefect": PREFECT_ROLE}
        return special.get(key) or self.roles.by_key(key)

    def conninfo(self, key: str, dbname: str | None = None) -> str:
        from psycopg.conninfo import make_conninfo

        try:
            password = self.passwords[key]
        except KeyError:
            raise SetupError(f"no credentials for database role '{key}' on this stack") from None
        return make_conninfo(
            host=self.host,
            port=self.port,
            dbname=dbname or self.dbname,
            user=self.user_for(key),
            password=password,
            sslmode="verify-full",
            sslrootcert=str(self.ca_file),
            connect_timeout=10,
            application_name=f"rejuve-{key}",
        )

    def connect(self, key: str, dbname: str | None = None, **kw: object) -> psycopg.Connection:
        import psycopg

        return psycopg.connect(self.conninfo(key, dbname), **kw)  # type: ignore[arg-type]

    def sqlalchemy_url(self, key: str, dbname: str | None = None) -> str:
        """A `postgresql+psycopg://` URL for Alembic/SQLAlchemy (same TLS parameters)."""
        from sqlalchemy.engine import URL

        return URL.create(
            "postgresql+psycopg",
            username=self.user_for(key),
            password=self.passwords[key],
            host=self.host,
            port=self.port,
            database=dbname or self.dbname,
            query={"sslmode": "verify-full", "sslrootcert": str(self.ca_file)},
        ).render_as_string(hide_password=False)

    def for_database(self, dbname: str, passwords: Mapping[str, str]) -> DatabaseAccess:
        """The same server, another database with its own role set."""
        return DatabaseAccess(self.host, self.port, dbname, self.ca_file, passwords)

    @classmethod
    def from_owner_url(
        cls, url: str, ca_file: Path | None, app_passwords: Mapping[str, str]
    ) -> DatabaseAccess:
        """An existing server: the URL names the migration owner; app roles get generated
        passwords that the owner sets while migrating."""
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(url)
        ca = parts.get("sslrootcert") or (str(ca_file) if ca_file else None)
        if not ca:
            raise SetupError(
                "REJUVE_DATABASE_URL needs a CA to verify the server",
                "add sslrootcert=/path/ca.crt to the URL or set REJUVE_CA_FILE",
            )
        dbname = str(parts.get("dbname") or "rejuve")
        owner = str(parts.get("user") or "")
        if owner != Roles(dbname).owner:
            raise SetupError(
                f"REJUVE_DATABASE_URL must use the role '{Roles(dbname).owner}', not '{owner}'"
            )
        return cls(
            host=str(parts.get("host") or "localhost"),
            port=int(parts.get("port") or 5432),
            dbname=dbname,
            ca_file=Path(str(ca)),
            passwords={**app_passwords, "owner": str(parts.get("password") or "")},
        )


def scram_verifier(conn: psycopg.Connection, role: str, password: str) -> str:
    """Hash a password client-side (libpq's PQencryptPasswordConn) so the plaintext never
    reaches the server, its logs or pg_stat_statements."""
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
