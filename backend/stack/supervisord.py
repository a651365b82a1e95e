"""supervisord, the process supervisor of the local stack.

One supervisord per stack home runs every long-running service as a program: it starts
them, restarts one that exits or is killed (with back-off when it keeps failing), and
stops them in order. Its configuration is generated into the home on every `rejuve up`
(`supervisor/supervisord.conf`); its control socket (`run/supervisord.sock`) is a Unix
socket only root can open, so only root can start, stop or read the services.

Programs are started by us (`autostart=false`), in dependency order, each waited for
until it answers; supervisord only restarts them afterwards. A program whose section
changed (its command, environment, or the digest of the code it runs) is re-created by
`apply`, which is how `rejuve up` restarts a service whose code was edited.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.exceptions import SetupError
from backend.stack import system
from backend.stack.layout import Layout

# supervisord's process states (supervisor.states.ProcessStates).
RUNNING = "RUNNING"
STARTING = "STARTING"
BACKOFF = "BACKOFF"
FATAL = "FATAL"
STOPPED = "STOPPED"

# After a crash a program is started again at once; if it then exits within `startsecs`
# the next try waits 1 s longer than the last (1, 2, 3, ... s), up to this many tries
# (about 20 min in all) before supervisord gives up on it (FATAL, shown as down).
START_RETRIES = 50


@dataclass(frozen=True)
class Program:
    """One [program:x] section."""

    name: str
    command: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict, repr=False)
    user: str | None = None
    directory: Path = Path("/")
    stop_signal: str = "TERM"
    stop_wait: int = 20
    # Signals go to the program's whole process group: its children (refiner workers,
    # flow runs, uvicorn workers) stop with it and are killed with it.
    as_group: bool = True
    start_secs: int = 3

    def section(self) -> str:
        lines = [
            f"[program:{self.name}]",
            f"command={' '.join(_quote(a) for a in self.command)}",
            f"directory={_escape(str(self.directory))}",
            "autostart=false",
            "autorestart=true",
            f"startsecs={self.start_secs}",
            f"startretries={START_RETRIES}",
            f"stopsignal={self.stop_signal}",
            f"stopwaitsecs={self.stop_wait}",
            f"stopasgroup={'true' if self.as_group else 'false'}",
            # A service that will not stop is killed with everything it started.
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_escape(str(self.log))}",
            "stdout_logfile_maxbytes=50MB",
            "stdout_logfile_backups=3",
        ]
        if self.user is not None:
            lines.append(f"user={self.user}")
        if self.env:
            pairs = ",".join(f"{k}={_quote(v)}" for k, v in sorted(self.env.items()))
            lines.append(f"environment={pairs}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    """supervisord expands %(name)s in values: a literal % is written %%."""
    if "\n" in value or "\r" in value:
        raise SetupError("a supervisord setting cannot contain a line break")
    return value.replace("%", "%%")


def _quote(value: str) -> str:
    # supervisord splits commands and environment with shlex (non-POSIX for environment):
    # quotes group, nothing escapes inside them, so pick the quote the value lacks.
    value = _escape(value)
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    raise SetupError("a supervisord setting cannot contain both kinds of quote")


def base_env() -> dict[str, str]:
    """What every program inherits: the settings of the stack (REJUVE_*), a fixed PATH and
    locale; not the rest of whichever shell ran `rejuve up` (a changed terminal would
    otherwise count as a changed service)."""
    env = {k: v for k, v in os.environ.items() if k.startswith("REJUVE_")}
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    env["LANG"] = "C.UTF-8"
    env["HOME"] = os.environ.get("HOME", "/root")
    return env


class Supervisord:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.dir = layout.home / "supervisor"
        self.config = self.dir / "supervisord.conf"
        self.socket = layout.run / "supervisord.sock"
        self.pid_file = layout.run / "supervisord.pid"
        self.log = layout.log_file("supervisord")

    # -- the daemon --------------------------------------------------------------------------

    def _call(self, method: str, *args: object) -> Any:
        """One XML-RPC call over the control socket (closed afterwards)."""
        from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]

        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        try:
            proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
            return getattr(proxy.supervisor, method)(*args)
        finally:
            transport.close()

    def running(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(self._call("getState")["statename"] == "RUNNING")
        except (OSError, xmlrpc.client.Error):
            return False

    def _render(self, programs: list[Program]) -> str:
        owner = "chown=root:root\n" if system.is_root() else ""
        # Programs drop to their own `user=`; supervisord itself stays root to do so.
        as_user = "user=root\n" if system.is_root() else ""
        head = (
            "; Written by `rejuve up` on every run; settings come from REJUVE_* instead.\n"
            "[unix_http_server]\n"
            f"file={_escape(str(self.socket))}\n"
            # Only root (the stack's operator) may control the services.
            "chmod=0700\n"
            f"{owner}"
            "\n[supervisord]\n"
            f"logfile={_escape(str(self.log))}\n"
            "logfile_maxbytes=5MB\n"
            "logfile_backups=2\n"
            "loglevel=info\n"
            f"{as_user}"
            f"pidfile={_escape(str(self.pid_file))}\n"
            "directory=/\n"
            # Logs readable by the group at most, like every other log of the stack.
            "umask=027\n"
            f"identifier=rejuve-{self.layout.home.name}\n"
            "\n[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
            "\n[supervisorctl]\n"
            f"serverurl=unix://{_escape(str(self.socket))}\n\n"
        )
        return head + "\n".join(p.section() for p in programs)

    def _write(self, programs: list[Program]) -> bool:
        """Write the configuration (0600: programs' environments hold secrets); True if
        it changed."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        text = self._render(programs)
        with contextlib.suppress(FileNotFoundError):
            if self.config.read_text() == text:
                return False
        tmp = self.config.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        tmp.replace(self.config)
        return True

    def _start_daemon(self) -> None:
        self.layout.run.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)  # left by a supervisord that was killed
        daemon = str(Path(sys.executable).parent / "supervisord")
        res = subprocess.run(
            [daemon, "-c", str(self.config)],
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
            cwd="/",
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            raise SetupError("supervisord did not start", (res.stderr or res.stdout)[-2000:])
        system.wait_until(self.running, 20, "supervisord", self.log)

    def apply(self, programs: list[Program]) -> list[str]:
        """Run supervisord with exactly these programs. A program whose section changed is
        stopped and re-created; returns the names of those that were running (the caller
        starts them again, in order)."""
        changed_file = self._write(programs)
        if not self.running():
            self._start_daemon()
            return []
        if not changed_file:
            return []
        added, changed, removed = self._call("reloadConfig")[0]
        was_running = [n for n in changed if self.state(n) not in (STOPPED, FATAL, "EXITED")]
        for name in changed + removed:
            with contextlib.suppress(xmlrpc.client.Fault):
                self._call("stopProcessGroup", name)
            self._call("removeProcessGroup", name)
        for name in added + changed:
            self._call("addProcessGroup", name)
        return was_running

    def shutdown(self) -> None:
        if not self.running():
            return
        pid = system.read_pid(self.pid_file)
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            self._call("shutdown")
        if pid is not None:
            system.wait_until(lambda: not system.pid_alive(pid), 120, "supervisord stopping")

    # -- programs ----------------------------------------------------------------------------

    def info(self, name: str) -> dict[str, Any] | None:
        """supervisord's record of a program, or None if it does not run the program."""
        if not self.socket.exists():
            return None
        try:
            info: dict[str, Any] = self._call("getProcessInfo", name)
        except (OSError, xmlrpc.client.Error):
            return None
        return info

    def state(self, name: str) -> str | None:
        info = self.info(name)
        return None if info is None else str(info["statename"])

    def start(self, name: str) -> None:
        if self.info(name) is None:
            raise SetupError(f"supervisord does not run {name}", "start it with `rejuve up`")
        try:
            self._call("startProcess", name, False)
        except xmlrpc.client.Fault as e:
            if "ALREADY_STARTED" not in e.faultString:
                raise SetupError(f"{name} did not start: {e.faultString}") from None

    def stop(self, name: str) -> None:
        if self.info(name) is None:
            return
        try:
            self._call("stopProcess", name, True)
        except xmlrpc.client.Fault as e:
            if "NOT_RUNNING" not in e.faultString:
                raise SetupError(f"{name} did not stop: {e.faultString}") from None

    def restarts(self) -> dict[str, int]:
        """How often each program exited on its own (crashed, was killed) and was started
        again since supervisord started, from supervisord's log: it keeps no counter.
        A stop we asked for is logged as `stopped:`, not `exited:`."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return {}
        for i in range(len(lines) - 1, -1, -1):
            if "supervisord started with pid" in lines[i]:
                lines = lines[i:]
                break
        counts: dict[str, int] = {}
        for line in lines:
            m = _EXITED.search(line)
            if m:
                counts[m.group(1)] = counts.get(m.group(1), 0) + 1
        return counts


_EXITED = re.compile(r" (?:INFO|WARN|CRIT) exited: (\S+) \(")


def started_at(info: dict[str, Any]) -> str | None:
    """When supervisord last started the program (UTC, ISO 8601)."""
    start = int(info.get("start") or 0)
    if start <= 0:
        return None
    return datetime.fromtimestamp(start, UTC).isoformat(timespec="seconds")


def wait_started(
    daemon: Supervisord, name: str, healthy: Any, log: Path, timeout: float = 90
) -> None:
    """Wait until the program answers; one that supervisord gave up on is an error pointing
    at its log, not a timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy():
            return
        if daemon.state(name) == FATAL:
            raise SetupError(f"{name} exited during start and would not stay up", f"see {log}")
        time.sleep(0.25)
    raise SetupError(f"{name} did not become healthy within {timeout:.0f} s", f"see {log}")
