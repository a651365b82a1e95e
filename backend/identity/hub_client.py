"""What a Hub service (the backend) needs: who holds this token, and with which roles.

A user's token is checked by asking the Hub (`GET {hub_api}/user` with the token itself),
as JupyterHub's own `HubAuth` does, without tornado: plain synchronous httpx, verified
against our CA. Answers are cached briefly so a notebook's burst of requests costs one
round trip; a revoked token keeps working for at most `cache_seconds` after the Hub
stops accepting it (the Hub itself re-checks an account every `auth_refresh_age`).

A token in use is re-checked in the background once its answer is half as old as
`cache_seconds`, so a busy caller never waits for the Hub (its requests would otherwise
pay a Hub round trip every `cache_seconds`: the slowest requests of the governed path).
The bound stays: no answer older than `cache_seconds` is ever used.
"""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from backend.exceptions import ServiceDown
from backend.identity import PLATFORM_ROLES

# A refused token is remembered only long enough to absorb a burst of retries.
_NEGATIVE_CACHE_SECONDS = 1.0
_MAX_TOKEN_CHARS = 512


def _key(token: str) -> bytes:
    # Tokens are kept in memory only as their hashes.
    return hashlib.sha256(token.encode()).digest()


class HubUnavailable(ServiceDown):
    """The Hub did not give an answer about a token (down, erroring, or refusing us).

    Distinct from a refused token: callers answer 503, not 401."""


@dataclass(frozen=True)
class HubIdentity:
    name: str
    groups: frozenset[str]
    roles: frozenset[str]
    # Hub admin (every user's server): separate from the platform role `admin`.
    admin: bool


def roles_for_groups(groups: frozenset[str]) -> frozenset[str]:
    """Hub groups that are platform roles; other groups (the Hub may have some) grant nothing."""
    return groups & PLATFORM_ROLES


class HubTokenValidator:
    def __init__(
        self,
        hub_api_url: str,
        service_token: str,
        ca_file: Path | str | None,
        # Short: a removed person's token must stop working soon (README: removal).
        cache_seconds: float = 5.0,
        *,
        service_name: str | None = None,
        timeout: float = 5.0,
        max_entries: int = 10_000,
    ) -> None:
        """`hub_api_url` like https://127.0.0.1:8444/hub/api (through the Hub's TLS proxy).
        Without `service_name`, the service token tells the Hub who we are on first use:
        a token must grant access to *this* service to be accepted."""
        self.hub_api_url = hub_api_url.rstrip("/")
        self._service_token = service_token
        self._service_name = service_name
        self.cache_seconds = cache_seconds
        self._negative_seconds = min(cache_seconds, _NEGATIVE_CACHE_SECONDS)
        self._max_entries = max_entries
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else True
        )
        self._http = httpx.Client(verify=verify, timeout=timeout, follow_redirects=False)
        # token hash -> (expires, refresh after, identity)
        self._cache: dict[bytes, tuple[float, float, HubIdentity | None]] = {}
        self._refreshing: set[bytes] = set()
        self._lock = threading.Lock()
        self._refresher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hub-refresh")

    def close(self) -> None:
        self._refresher.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def __enter__(self) -> HubTokenValidator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def service_name(self) -> str:
        if self._service_name is None:
            model = self._whoami(self._service_token)
            if model is None or model.get("kind") != "service":
                raise HubUnavailable(
                    "the Hub does not accept this service's API token",
                    "check the service's api_token in the Hub configuration",
                )
            self._service_name = str(model["name"])
        return self._service_name

    def validate(self, token: str) -> HubIdentity | None:
        """The user holding `token`, or None if the Hub does not vouch for it for this
        service. Raises HubUnavailable when the Hub gives no answer."""
        known, identity = self.remembered(token)
        if known:
            return identity
        return self._check(_key(token), token)

    def remembered(self, token: str) -> tuple[bool, HubIdentity | None]:
        """(True, answer) if this token's answer is known without asking the Hub (a fresh
        cached answer, or a token that cannot be one), else (False, None). No I/O: safe on
        an event loop. A cached answer past half its window starts a background re-check."""
        if not token or len(token) > _MAX_TOKEN_CHARS or not token.isprintable() or " " in token:
            return True, None
        key = _key(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is None or hit[0] <= now:
                return False, None
            _, refresh_after, identity = hit
            if identity is not None and now >= refresh_after and key not in self._refreshing:
                self._refreshing.add(key)
                self._refresher.submit(self._refresh, key, token)
            return True, identity

    def _check(self, key: bytes, token: str) -> HubIdentity | None:
        # The clock starts before the question: an answer is as old as the moment it was asked.
        asked = time.monotonic()
        identity = self._identity(token)
        ttl = self.cache_seconds if identity is not None else self._negative_seconds
        if ttl > 0:
            with self._lock:
                self._remember(key, asked + ttl, asked + ttl / 2, identity)
        return identity

    def _refresh(self, key: bytes, token: str) -> None:
        try:
            self._check(key, token)
        except HubUnavailable:
            pass  # the entry expires as it would have; the next request asks and answers 503
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def _remember(
        self, key: bytes, expires: float, refresh_after: float, identity: HubIdentity | None
    ) -> None:
        if len(self._cache) >= self._max_entries:
            now = time.monotonic()
            for k in [k for k, (exp, _, _) in self._cache.items() if exp <= now]:
                del self._cache[k]
            while len(self._cache) >= self._max_entries:
                del self._cache[next(iter(self._cache))]
        self._cache[key] = (expires, refresh_after, identity)

    def _identity(self, token: str) -> HubIdentity | None:
        service = self.service_name()
        model = self._whoami(token)
        if model is None or model.get("kind") != "user":
            return None
        scopes = set(model.get("scopes") or ())
        # What HubAuth checks too: holding a valid token is not enough, it must have been
        # issued with access to this service (server tokens and users' tokens are).
        if not scopes & {f"access:services!service={service}", "access:services"}:
            return None
        groups = frozenset(str(g) for g in model.get("groups") or ())
        return HubIdentity(
            name=str(model["name"]),
            groups=groups,
            roles=roles_for_groups(groups),
            admin=bool(model.get("admin")),
        )

    def _whoami(self, token: str) -> dict[str, Any] | None:
        try:
            r = self._http.get(
                f"{self.hub_api_url}/user", headers={"Authorization": f"token {token}"}
            )
        except httpx.HTTPError as e:
            raise HubUnavailable(f"the Hub at {self.hub_api_url} does not answer: {e}") from e
        if r.status_code in (401, 403):
            return None
        if r.status_code != 200:
            raise HubUnavailable(f"the Hub answered {r.status_code} to a token check")
        try:
            model = r.json()
        except ValueError as e:
            raise HubUnavailable("the Hub answered a token check with no JSON") from e
        return model if isinstance(model, dict) and "name" in model else None


def login_token(
    hub_url: str, ca_file: Path | str, name: str, password: str, note: str = "rejuve"
) -> str:
    """Log in to the Hub's form as a person would and create an API token for them (what
    the token page does): for tools and benchmarks acting as a real user, outside a
    notebook. Raises HubUnavailable if the Hub does not let them in."""
    import re

    tls = ssl.create_default_context(cafile=str(ca_file))
    with httpx.Client(base_url=hub_url, verify=tls, timeout=30) as client:
        page = client.get("/hub/login")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        if xsrf is None:
            raise HubUnavailable(f"no login form at {hub_url}/hub/login")
        r = client.post(
            "/hub/login", data={"username": name, "password": password, "_xsrf": xsrf.group(1)}
        )
        if r.status_code != 302:
            raise HubUnavailable(f"login refused for {name} ({r.status_code})")
        made = client.post(
            f"/hub/api/users/{name}/tokens",
            json={"note": note},
            headers={"X-XSRFToken": client.cookies.get("_xsrf", path="/hub/") or ""},
        )
        if made.status_code != 201:
            raise HubUnavailable(f"token refused for {name} ({made.status_code})")
        return str(made.json()["token"])
