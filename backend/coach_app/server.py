"""The coach app's server: Panel over HTTPS on 127.0.0.1, behind the Hub's login.

Panel's generic OAuth provider is pointed at JupyterHub (FACTS.md: authorize through the
Hub's proxy, token and user from the Hub API; `name` is the user key). The scope asked for
is access to the backend service: the token the Hub issues then carries
`access:services!service=rejuve-backend`, which is what the backend's token check demands
(backend/identity/hub_client.py), so the app calls the backend with the coach's own token
and the backend's guard, row rules and audit see the coach, never the app."""

from __future__ import annotations

import os
import uuid
from html import escape
from pathlib import Path
from typing import Any

import panel as pn
import tornado.web
from panel.auth import STATE_COOKIE_NAME

from backend.coach_app import member as member_page
from backend.coach_app import triage as triage_page
from backend.coach_app.client import BackendRefused, CoachApi, NotYours, tls_context
from backend.coach_app.config import PREFIX, CoachConfig
from backend.coach_app.style import html

THREADS = 4
TEMPLATES = Path(__file__).resolve().parent / "templates"


class Logout(tornado.web.RequestHandler):
    """Log out of the app and the Hub. Panel's own logout clears its cookies at `/` only,
    not where this app sets them (its prefix), and its page loads a logo from the internet;
    without ending the Hub session too, the next visit would log straight back in."""

    def get(self) -> None:
        for name in ("user", "id_token", "access_token", "refresh_token", "oauth_expiry"):
            self.clear_cookie(name, path=PREFIX)
        self.clear_cookie(STATE_COOKIE_NAME, path=PREFIX)
        self.write((TEMPLATES / "logout.html").read_text())


def _header(config: CoachConfig) -> Any:
    user = escape(pn.state.user or "?")
    return html(
        f"<div class='coach-header'><b>Rejuve coach</b> &middot; signed in as"
        f" <span class='coach-user'>{user}</span> &middot; <a href='{config.hub_url}/hub/home'>"
        f"Hub</a> &middot; <a href='{PREFIX}/logout'>log out</a></div>",
        sizing_mode="stretch_width",
    )


def _api(config: CoachConfig) -> CoachApi:
    token = pn.state.access_token
    if not token:
        raise BackendRefused(401, "no Hub token in this session: log in again")
    api = CoachApi(config.backend_url, token, tls_context(config.ca_file))
    pn.state.on_session_destroyed(lambda _ctx: api.close())
    return api


def _page(config: CoachConfig, body: Any) -> Any:
    return pn.Column(_header(config), body, sizing_mode="stretch_width")


def triage_app(config: CoachConfig) -> Any:
    try:
        data = _api(config).triage()
        body = html(
            "<h2>Your members, worst first</h2>" + triage_page.table_html(data),
            sizing_mode="stretch_width",
        )
    except BackendRefused as e:
        body = html(f"<p class='unavailable'>{escape(str(e))}</p>")
    return _page(config, body)


def member_app(config: CoachConfig) -> Any:
    raw = (pn.state.session_args.get("member") or [b""])[0]
    try:
        # A member id, nothing else: it goes into the backend's paths.
        member = str(uuid.UUID(raw.decode(errors="replace").strip()))
    except ValueError:
        return _page(config, member_page.refused())
    try:
        page = member_page.MemberPage(_api(config), member)
        body = page.view()
    except NotYours:
        body = member_page.refused()
    except BackendRefused as e:
        body = html(f"<p class='unavailable'>{escape(str(e))}</p>")
    return _page(config, body)


def serve(config: CoachConfig) -> None:
    """Serve until stopped (the supervisor runs this in the foreground)."""
    # Panel's OAuth handlers fetch the token with tornado's HTTP client, whose default
    # TLS context reads SSL_CERT_FILE when it is made: our CA, for the Hub's certificate.
    os.environ["SSL_CERT_FILE"] = config.ca_file
    # Pages call the backend synchronously: widget callbacks run on a few threads, so one
    # coach's slow answer does not hold up every other session's clicks.
    pn.config._nthreads = THREADS  # the setting behind PANEL_NUM_THREADS
    hub = config.hub_url

    # Functions, not partials: Panel calls a function once per session, but would show
    # any other object as it is (a partial's repr, the configuration included).
    def triage() -> Any:
        return triage_app(config)

    def member() -> Any:
        return member_app(config)

    pn.serve(  # type: ignore[no-untyped-call]  # panel ships no types
        {"/": triage, "/member": member},
        port=config.port,
        address="127.0.0.1",
        websocket_origin=[hub.removeprefix("https://")],
        show=False,
        start=True,
        title="Rejuve coach",
        prefix=PREFIX,
        ssl_certfile=config.tls_cert,
        ssl_keyfile=config.tls_key,
        oauth_provider="generic",
        oauth_key=config.client_id,
        oauth_secret=config.client_secret,
        oauth_redirect_uri=config.redirect_uri,
        oauth_extra_params={
            "AUTHORIZE_URL": f"{hub}/hub/api/oauth2/authorize",
            "TOKEN_URL": f"{hub}/hub/api/oauth2/token",
            "USER_URL": f"{hub}/hub/api/user",
            "USER_KEY": "name",
            # What the backend accepts (see the module docstring).
            "scope": [f"access:services!service={config.backend_service}"],
        },
        cookie_secret=config.cookie_secret,
        oauth_encryption_key=config.encryption_key,
        cookie_path=PREFIX,
        # Panel's own page for this loads fonts from the internet.
        oauth_error_template=str(TEMPLATES / "error.html"),
        # Before Panel's logout (matched first): see `Logout`.
        extra_patterns=[("/logout", Logout)],
        liveness=True,
    )
