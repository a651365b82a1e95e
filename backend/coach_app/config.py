"""What the coach app's server needs, read from one JSON file (mode 0600) that whoever
starts it writes: the local stack writes `<home>/coach/coach.json` before each start.

It names the Hub (OAuth provider), the backend, the CA, the server's TLS files and the
app's own secrets (OAuth client secret, cookie secret). It holds no database credentials:
the app never connects to a database."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Self

# Where the Hub's proxy serves the app (the Hub's service is named `coach`).
SERVICE = "coach"
PREFIX = f"/services/{SERVICE}"


@dataclass(frozen=True)
class CoachConfig:
    port: int
    hub_url: str  # public: the browser is sent here to log in
    backend_url: str
    backend_service: str  # the Hub service whose access the coach's token must carry
    ca_file: str
    tls_cert: str
    tls_key: str
    # The Hub service's API token, also its OAuth client secret; the cookie secret.
    client_secret: str = field(repr=False)
    cookie_secret: str = field(repr=False)

    @property
    def client_id(self) -> str:
        return f"service-{SERVICE}"

    @property
    def public_url(self) -> str:
        return f"{self.hub_url}{PREFIX}/"

    @property
    def redirect_uri(self) -> str:
        # Panel's OAuth callback is its login endpoint, under the prefix.
        return f"{self.hub_url}{PREFIX}/login"

    @property
    def encryption_key(self) -> str:
        """Fernet key for the tokens Panel keeps in cookies, derived from the cookie
        secret (one secret to rotate)."""
        digest = hashlib.sha256(b"coach-token-cookie:" + self.cookie_secret.encode()).digest()
        return base64.urlsafe_b64encode(digest).decode()

    @classmethod
    def load(cls, path: Path) -> Self:
        return cls(**json.loads(path.read_text()))

    def write(self, path: Path) -> None:
        import os

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(self), fh, indent=2)
