"""Host-level helpers: the unprivileged service user, file ownership, ports, processes."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from backend.exceptions import SetupError


def is_root() -> bool:
    return os.geteuid() == 0


def ensure_service_user(name: str) -> None:
    """PostgreSQL refuses to run as root; Redis need not. Both run as this system user."""
    if not is_root():
        return
    try:
        pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(
            [
                useradd,
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                name,
            ],
            check=True,
        )


def chown_to(path: Path, user: str) -> None:
    if is_root():
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def run_as(user: str) -> dict[str, Any]:
    """subprocess keyword arguments that drop to the service user when we are root."""
    if not is_root():
        return {}
    return {"user": user, "group": user, "extra_groups": []}


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def read_pid(pid_file: Path) -> int | None:
    try:
        text = pid_file.read_text().split("\n", 1)[0].strip()
        pid = int(text)
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def terminate(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if the process has not gone within `timeout` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def https_ok(
    url: str, ca_file: Path, timeout: float = 3, auth: tuple[str, str] | None = None
) -> bool:
    """True if `url` answers 200 over TLS verified against our CA: every health probe."""
    import ssl

    import httpx

    tls = ssl.create_default_context(cafile=str(ca_file))
    try:
        r = httpx.get(url, timeout=timeout, verify=tls, auth=auth)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def wait_until(check: Any, timeout: float, what: str, log_file: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    hint = f"see {log_file}" if log_file else None
    raise SetupError(f"{what} did not become healthy within {timeout:.0f} s", hint)
