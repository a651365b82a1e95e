"""A device as the ingestion tests see it: an enrolled member, and a registered source
whose key writes for the members it is enrolled for (as an operator would set them up)."""

from __future__ import annotations

import secrets
import ssl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from backend.api.api_keys import enrol, register, revoke
from backend.governance.members import Enrolment
from backend.governance.members import enrol as enrol_member
from backend.runtime import Runtime


def enrolled_member(ctx: Runtime, *sources: str) -> uuid.UUID:
    """A newly enrolled member, each of `sources` enrolled to write for it."""
    m = uuid.uuid4()
    with ctx.db.connect("owner") as conn:
        enrol_member(conn, Enrolment(m, "local"))
        for source in sources:
            enrol(conn, source, [m])
    return m


@contextmanager
def source_client(ctx: Runtime, prefix: str) -> Iterator[tuple[httpx.Client, str]]:
    """An HTTPS client carrying a new source's key, and the source's name; the key is
    revoked afterwards."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    with ctx.db.connect("owner") as conn:
        key = register(conn, name)
    tls = ssl.create_default_context(cafile=str(ctx.ca_file))
    try:
        with httpx.Client(
            base_url=ctx.backend_url,
            verify=tls,
            timeout=30,
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            yield client, name
    finally:
        with ctx.db.connect("owner") as conn:
            revoke(conn, name)
