"""Who is asking: the identity the backend resolved, and the purpose they declare."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Viewer:
    user: str  # the Hub user name
    roles: frozenset[str]
    region: str

    def has(self, role: str) -> bool:
        return role in self.roles
