"""The local TimescaleDB server: install, initdb, configure for TLS + SCRAM, start, stop."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from backend.db.access import DatabaseAccess, scram_verifier
from backend.db.roles import PREFECT_DB, PREFECT_ROLE, SUPERUSER
from backend.exceptions import SetupError
from backend.settings import REPO_ROOT
from backend.stack import system
from backend.stack.layout import Layout
from backend.stack.supervised import SupervisedService
from backend.stack.supervisord import Program

DEBIAN_BINDIR = Path("/usr/lib/postgresql/17/bin")
INSTALL_SCRIPT = REPO_ROOT / "deploy" / "local" / "install-timescaledb.sh"

_HBA = """\
# Written by rejuve: TCP over TLS with SCRAM only; no Unix socket, no trust, no plain TCP.
hostssl all all 127.0.0.1/32 scram-sha-256
hostnossl all all 0.0.0.0/0 reject
"""


def find_bindir(tree: Path) -> Path | None:
    if (DEBIAN_BINDIR / "postgres").exists() and (
        DEBIAN_BINDIR.parent / "lib" / "timescaledb.so"
    ).exists():
        return DEBIAN_BINDIR
    tree_bin = tree / "usr/lib/postgresql/17/bin"
    if (tree / ".rejuve-ready").exists():
        return tree_bin
    return None


def install(tree: Path) -> Path:
    """Run the installer (apt on Debian 13, an unpacked Debian 13 tree on Debian 12)."""
    if not system.is_root():
        raise SetupError(
            "TimescaleDB is not installed and installing it needs root",
            f"run as root: {INSTALL_SCRIPT}",
        )
    out = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)],
        env={"REJUVE_PG_TREE": str(tree), "PATH": _path()},
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SetupError("installing PostgreSQL 17 + TimescaleDB failed", out.stderr[-2000:])
    return Path(out.stdout.strip().splitlines()[-1])


def _path() -> str:
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class TimescaleDB(SupervisedService):
    """PostgreSQL run in the foreground by supervisord, as the service user (it refuses
    root). supervisord stops it with SIGINT, PostgreSQL's "fast" shutdown: sessions are
    ended and a checkpoint written, so the next start needs no crash recovery."""

    name = "timescaledb"
    port_settings = "REJUVE_PG_PORT"

    def __init__(
        self, layout: Layout, access: DatabaseAccess, tree: Path, service_user: str
    ) -> None:
        super().__init__(layout)
        self.access = access
        self.tree = tree
        self.user = service_user
        self.dir = layout.service_dir("timescaledb")
        self.data = self.dir / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{self.access.host}:{self.access.port}/{self.access.dbname}"

    # -- lifecycle ---------------------------------------------------------------------------

    def _bindir(self) -> Path:
        return find_bindir(self.tree) or install(self.tree)

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self._bindir() / tool), *args],
            check=check,
            capture_output=True,
            text=True,
            cwd="/",
            **system.run_as(self.user),
        )

    def _init_cluster(self) -> None:
        system.ensure_service_user(self.user)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        system.chown_to(self.dir, self.user)
        if (self.data / "PG_VERSION").exists():
            return
        pwfile = self.dir / ".initdb-pw"
        pwfile.write_text(self.access.passwords["super"])
        pwfile.chmod(0o600)
        system.chown_to(pwfile, self.user)
        try:
            res = self._pg(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--locale=C.UTF-8",
                "--encoding=UTF8",
                "--data-checksums",
                check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise SetupError("initdb failed", res.stderr[-2000:])

    def _configure(self) -> None:
        # TLS material the server reads must belong to its user; copy, don't share.
        for src, dst in (
            (self.layout.server_cert, "server.crt"),
            (self.layout.server_key, "server.key"),
        ):
            target = self.dir / dst
            shutil.copyfile(src, target)
            target.chmod(0o600)
            system.chown_to(target, self.user)
        conf = self.data / "rejuve.conf"
        conf.write_text(
            "# Written by rejuve on every start; edit settings via REJUVE_* instead.\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.access.port}\n"
            "unix_socket_directories = ''\n"
            "ssl = on\n"
            f"ssl_cert_file = '{self.dir / 'server.crt'}'\n"
            f"ssl_key_file = '{self.dir / 'server.key'}'\n"
            "ssl_min_protocol_version = 'TLSv1.2'\n"
            "password_encryption = 'scram-sha-256'\n"
            "shared_preload_libraries = 'timescaledb'\n"
            "timescaledb.telemetry_level = off\n"
            "max_connections = 200\n"
            "shared_buffers = '1GB'\n"
            "work_mem = '32MB'\n"
            "maintenance_work_mem = '256MB'\n"
            # Short statements over many chunks: JIT compiled a one-key rollup refresh for
            # 20 s (cost estimates over unanalysed chunks and temp tables cross its threshold).
            "jit = off\n"
            # Ingest-heavy: fewer, larger checkpoints.
            "max_wal_size = '4GB'\n"
            "wal_level = 'replica'\n"
            "log_line_prefix = '%m [%p] %q%u@%d '\n"
            "log_connections = off\n"
            "log_min_duration_statement = -1\n"
            # No personal data in the server log either: errors without their DETAIL and
            # CONTEXT lines (which quote the refused row or JSON) or the failing statement.
            "log_error_verbosity = terse\n"
            "log_min_error_statement = panic\n"
            "log_parameter_max_length_on_error = 0\n"
        )
        system.chown_to(conf, self.user)
        main = self.data / "postgresql.conf"
        text = main.read_text()
        if "include_if_exists = 'rejuve.conf'" not in text:
            main.write_text(text + "\ninclude_if_exists = 'rejuve.conf'\n")
        (self.data / "pg_hba.conf").write_text(_HBA)

    def ports(self) -> tuple[int, ...]:
        return (self.access.port,)

    def program(self) -> Program:
        system.ensure_service_user(self.user)
        return Program(
            self.name,
            [str(self._bindir() / "postgres"), "-D", str(self.data)],
            self.log,
            env={"LANG": "C.UTF-8"},
            user=self.user if system.is_root() else None,
            stop_signal="INT",
            stop_wait=60,
            # The postmaster stops its own backends; a signal to each would cancel queries.
            as_group=False,
            start_secs=5,
        )

    def prepare(self) -> None:
        self._init_cluster()
        self._configure()

    def healthy(self) -> bool:
        try:
            with self.access.connect("super", "postgres", connect_timeout=3) as conn:
                return conn.execute("select 1").fetchone() == (1,)
        except psycopg.Error:
            return False

    # -- bootstrap: what only a superuser may do, once per cluster ----------------------------

    def bootstrap(self) -> None:
        """Create the migration owner, the zone database and Prefect's database and role."""
        owner = self.access.roles.owner
        with self.access.connect("super", "postgres", autocommit=True) as conn:
            _ensure_login_role(conn, owner, self.access.passwords["owner"], createrole=True)
            _ensure_database(conn, self.access.dbname, owner)
            _ensure_login_role(conn, PREFECT_ROLE, self.access.passwords["prefect"])
            _ensure_database(conn, PREFECT_DB, PREFECT_ROLE)


def _ensure_login_role(
    conn: psycopg.Connection, role: str, password: str, createrole: bool = False
) -> None:
    exists = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    attrs = "LOGIN CREATEROLE" if createrole else "LOGIN"
    conn.execute(
        sql.SQL("{} ROLE {} " + attrs + " PASSWORD {}").format(
            sql.SQL(verb), sql.Identifier(role), sql.Literal(scram_verifier(conn, role, password))
        )
    )


def _ensure_database(conn: psycopg.Connection, db: str, owner: str) -> None:
    exists = conn.execute("select 1 from pg_database where datname = %s", (db,)).fetchone()
    if not exists:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(owner))
        )
    # Connecting is a privilege granted per role, not something every role gets.
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db)))
