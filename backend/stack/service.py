"""What every supervised service offers the supervisor."""

from __future__ import annotations

from dataclasses import asdict, dataclass
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

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Service(Protocol):
    @property
    def name(self) -> str: ...

    def start(self) -> None:
        """Start the service (idempotent) and return once it is healthy."""

    def stop(self) -> None:
        """Stop the service if it runs; a no-op otherwise."""

    def status(self) -> ServiceStatus: ...
