"""Who people are: accounts on the JupyterHub and the platform roles they hold.

Platform roles are Hub groups of the same name. The Hub keeps the membership (synced from
the account store at every login and auth refresh); the backend reads it from the Hub with
each user's token (`hub_client`). This module stays import-light: the backend imports it
without JupyterHub.
"""

from __future__ import annotations

PLATFORM_ROLES: frozenset[str] = frozenset(
    {"member", "coach", "researcher", "steward", "admin", "auditor"}
)

__all__ = ["PLATFORM_ROLES"]
