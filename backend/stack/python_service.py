"""A service of ours: a Python process from this virtualenv that supervisord runs, with a
log file and, unless it says otherwise, a heartbeat file it touches while it is healthy."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

from backend.settings import REPO_ROOT
from backend.stack import code
from backend.stack.layout import Layout
from backend.stack.supervised import SupervisedService
from backend.stack.supervisord import Program, base_env


class PythonService(SupervisedService):
    start_timeout = 180

    def __init__(
        self,
        name: str,
        layout: Layout,
        argv: Sequence[str],
        url: str,
        env: dict[str, str] | None = None,
        healthy: Callable[[], bool] | None = None,
        heartbeat_max_age: float = 30.0,
        digest: str | None = None,
    ) -> None:
        super().__init__(layout)
        self.name = name
        self.argv = list(argv)
        self._url = url
        self.env = env or {}
        self.heartbeat = layout.run / f"{name}.heartbeat"
        self._healthy = healthy
        self._max_age = heartbeat_max_age
        self._digest = digest

    @property
    def url(self) -> str:
        return self._url

    def program(self) -> Program:
        env = {
            **base_env(),
            **self.env,
            "REJUVE_CODE_DIGEST": self._digest or code.code_digest(),
        }
        return Program(
            self.name,
            [sys.executable, "-m", "backend.cli.main", *self.argv],
            self.log,
            env=env,
            directory=REPO_ROOT,
        )

    def prepare(self) -> None:
        # A heartbeat left by the previous run must not pass for this one's.
        self.heartbeat.unlink(missing_ok=True)

    def healthy(self) -> bool:
        if self._healthy is not None:
            return self._healthy()
        try:
            return time.time() - self.heartbeat.stat().st_mtime < self._max_age
        except FileNotFoundError:
            return False
