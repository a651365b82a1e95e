"""The platform operator on the host: changes made from the CLI (policy, studies) are
audited like an admin's over the API, as `operator:<login>`."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from backend.exceptions import UserError

if TYPE_CHECKING:
    from backend.runtime import Runtime


@contextmanager
def operator_audit(
    ctx: Runtime, action: str, resource: str, params: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """One audit record for the change made in the block, whatever its outcome; the block
    may add to `params` (e.g. whether anything changed)."""
    from backend.governance import audit

    outcome = "allowed"
    try:
        yield params
    except UserError:
        outcome = "denied"
        raise
    except Exception:
        outcome = "error"
        raise
    finally:
        with ctx.db.connect("backend") as conn:
            audit.append(
                conn,
                audit.AuditEvent(
                    actor=f"operator:{getpass.getuser()}",
                    role="operator",
                    action=action,
                    resource=resource,
                    outcome=outcome,
                    params=params,
                    client="cli",
                ),
            )
