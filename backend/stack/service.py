"""What every supervised service offers the supervisor."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

State = Literal["up", "down", "degraded", "external"]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: State
    url: str
    pid: int | None
    log: str | None
    detail: str = ""
    # Times supervisord started it again after it exited on its own (crash, kill) since
    # the stack came up; when it last started (UTC). None for servers we do not run.
    restarts: int | None = None
    started: str | None = None
    # What a person types to log in to its web UI, where that is a shared secret (the
    # Prefect UI): shown to the operator under the table, never in JSON or a repr.
    login: str = field(default="", repr=False, compare=False)

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        del d["login"]
        return d


class Service(Protocol):
    @property
    def name(self) -> str: ...

    def start(self) -> None:
        """Start the service (idempotent) and return once it is healthy."""

    def stop(self) -> None:
        """Stop the service if it runs; a no-op otherwise."""

    def status(self) -> ServiceStatus: ...
