"""The local Redis: Debian's redis-server on 127.0.0.1, TLS only, one ACL user."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import redis

from backend.exceptions import SetupError
from backend.runtime.access import RedisAccess
from backend.stack import system
from backend.stack.layout import Layout
from backend.stack.supervised import SupervisedService
from backend.stack.supervisord import Program


class RedisServer(SupervisedService):
    """redis-server in the foreground under supervisord, as the service user."""

    name = "redis"
    port_settings = "REJUVE_REDIS_PORT"

    def __init__(self, layout: Layout, access: RedisAccess, service_user: str) -> None:
        super().__init__(layout)
        self.access = access
        self.user = service_user
        self.dir = layout.service_dir("redis")

    @property
    def url(self) -> str:
        return self.access.display_url

    def _write_config(self) -> Path:
        system.ensure_service_user(self.user)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        system.chown_to(self.dir, self.user)
        for src, dst in (
            (self.layout.server_cert, "server.crt"),
            (self.layout.server_key, "server.key"),
        ):
            shutil.copyfile(src, self.dir / dst)
            (self.dir / dst).chmod(0o600)
            system.chown_to(self.dir / dst, self.user)
        # The ACL file holds a SHA-256 of the password, never the password itself.
        digest = hashlib.sha256(self.access.password.encode()).hexdigest()
        acl = self.dir / "users.acl"
        acl.write_text(f"user default off\nuser {self.access.username} on #{digest} ~* &* +@all\n")
        conf = self.dir / "redis.conf"
        conf.write_text(
            "# Written by rejuve on every start.\n"
            "bind 127.0.0.1\n"
            "protected-mode yes\n"
            "port 0\n"
            f"tls-port {self.access.port}\n"
            f"tls-cert-file {self.dir / 'server.crt'}\n"
            f"tls-key-file {self.dir / 'server.key'}\n"
            f"tls-ca-cert-file {self.layout.ca_cert}\n"
            # Clients authenticate with the ACL password, not certificates.
            "tls-auth-clients no\n"
            f"aclfile {acl}\n"
            # supervisord runs it in the foreground and keeps its log (stdout).
            "daemonize no\n"
            'logfile ""\n'
            f"dir {self.dir}\n"
            # Streams carry member events: an append-only file makes acknowledged writes durable.
            "appendonly yes\n"
            "appendfsync everysec\n"
            "maxmemory-policy noeviction\n"
        )
        for f in (acl, conf):
            f.chmod(0o600)
            system.chown_to(f, self.user)
        return conf

    def _server(self) -> str:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(server).exists():
            raise SetupError(
                "redis-server is not installed", "run `make setup` (apt: redis-server)"
            )
        return server

    def ports(self) -> tuple[int, ...]:
        return (self.access.port,)

    def program(self) -> Program:
        system.ensure_service_user(self.user)
        return Program(
            self.name,
            [self._server(), str(self.dir / "redis.conf")],
            self.log,
            user=self.user if system.is_root() else None,
        )

    def prepare(self) -> None:
        self._write_config()

    def healthy(self) -> bool:
        try:
            return bool(self.access.client(socket_timeout=2).ping())
        except (redis.RedisError, OSError):
            return False
