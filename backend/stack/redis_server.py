"""The local Redis: Debian's redis-server on 127.0.0.1, TLS only, one ACL user."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import redis

from backend.exceptions import SetupError
from backend.runtime.access import REDIS_USER, RedisAccess  # noqa: F401 (moved to the runtime)
from backend.stack import system
from backend.stack.layout import Layout
from backend.stack.service import ServiceStatus


class RedisServer:
    name = "redis"

    def __init__(self, layout: Layout, access: RedisAccess, service_user: str) -> None:
        self.layout = layout
        self.access = access
        self.user = service_user
        self.dir = layout.service_dir("redis")
        self.log = layout.log_file("redis")
        self.pid_file = self.dir / "redis.pid"

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
            "daemonize yes\n"
            f"pidfile {self.pid_file}\n"
            f"logfile {self.log}\n"
            f"dir {self.dir}\n"
            # Streams carry member events: an append-only file makes acknowledged writes durable.
            "appendonly yes\n"
            "appendfsync everysec\n"
            "maxmemory-policy noeviction\n"
        )
        for f in (acl, conf):
            f.chmod(0o600)
            system.chown_to(f, self.user)
        self.log.touch(mode=0o640, exist_ok=True)
        self.log.chmod(0o640)
        system.chown_to(self.log, self.user)
        return conf

    def pid(self) -> int | None:
        return system.read_pid(self.pid_file)

    def start(self) -> None:
        if self.pid() is not None:
            return
        if system.port_in_use(self.access.port):
            raise SetupError(
                f"port {self.access.port} is taken by another program",
                "set REJUVE_REDIS_PORT to a free port",
            )
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(server).exists():
            raise SetupError(
                "redis-server is not installed", "run `make setup` (apt: redis-server)"
            )
        conf = self._write_config()
        res = subprocess.run(
            [server, str(conf)],
            check=False,
            capture_output=True,
            text=True,
            cwd="/",
            **system.run_as(self.user),
        )
        if res.returncode != 0:
            raise SetupError("Redis did not start", f"see {self.log}\n{res.stderr}")
        system.wait_until(self.healthy, 20, "Redis", self.log)

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            system.terminate(pid)

    def healthy(self) -> bool:
        try:
            return bool(self.access.client(socket_timeout=2).ping())
        except (redis.RedisError, OSError):
            return False

    def status(self) -> ServiceStatus:
        pid = self.pid()
        url = self.access.display_url
        if pid is None:
            return ServiceStatus(self.name, "down", url, None, str(self.log))
        return ServiceStatus(
            self.name, "up" if self.healthy() else "degraded", url, pid, str(self.log)
        )
