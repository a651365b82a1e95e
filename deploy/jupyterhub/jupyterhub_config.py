# JupyterHub 6.1 for the local stack: `jupyterhub -f deploy/jupyterhub/jupyterhub_config.py`.
#
# Only environment variables set by the entry point parametrise it (see README.md beside
# this file); no secret is written here: the cookie secret lives in a 0600 file the Hub
# creates in the state directory, tokens come from files (or the environment).
#
# Everything listens on 127.0.0.1. The public side is the proxy over HTTPS with our local
# CA's certificate; the Hub's own API, the proxy's control API and single-user servers
# are plain HTTP on loopback (JupyterHub's internal_ssl would cover them; not set up).
import os
import ssl
import sys
from pathlib import Path

c = get_config()  # noqa: F821  (provided by JupyterHub's config loader)

# Importable from any working directory: the config lives in the checkout, two levels down.
_repo = Path(__file__).resolve().parents[2]
if str(_repo) not in sys.path:
    sys.path.insert(0, str(_repo))

from backend.identity.hub_auth import RejuveAuthenticator  # noqa: E402
from backend.identity.spawner import AccountSpawner, landing_url  # noqa: E402

BACKEND_SERVICE = "rejuve-backend"
COACH_SERVICE = "coach"


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(f"REJUVE_HUB_{name}", default)
    if value is None or value == "":
        raise SystemExit(f"jupyterhub_config: REJUVE_HUB_{name} is not set")
    return value


def _secret(name: str) -> str:
    """REJUVE_HUB_<name>_FILE (preferred: a file is not inherited by children nor shown in
    /proc/<pid>/environ) or REJUVE_HUB_<name>."""
    path = os.environ.get(f"REJUVE_HUB_{name}_FILE")
    value = Path(path).read_text().strip() if path else os.environ.get(f"REJUVE_HUB_{name}")
    if not value:
        raise SystemExit(f"jupyterhub_config: set REJUVE_HUB_{name}_FILE or REJUVE_HUB_{name}")
    return value


class _SharedTLSContext(ssl.SSLContext):
    # traitlets deep-copies config values as it applies them; an SSLContext cannot be
    # copied, and sharing this one is what we want anyway.
    def __deepcopy__(self, memo: dict[int, object]) -> "_SharedTLSContext":
        return self


state = Path(_env("STATE_DIR")).resolve()
state.mkdir(mode=0o700, parents=True, exist_ok=True)
state.chmod(0o700)
ca_file = _env("CA_FILE")

# Where the Hub listens; its own files go to the state directory, never the working one.
c.JupyterHub.bind_url = f"https://127.0.0.1:{int(_env('PORT'))}/"
c.JupyterHub.ssl_cert = _env("TLS_CERT")
c.JupyterHub.ssl_key = _env("TLS_KEY")
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{int(_env('API_PORT'))}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{int(_env('PROXY_API_PORT'))}"
c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
c.JupyterHub.pid_file = str(state / "hub.pid")
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")

# The Hub checks a service's `url` and the proxy forwards to it; both must trust our CA
# (besides the system's). The proxy is a Node process started with the Hub's environment.
_tls = _SharedTLSContext(ssl.PROTOCOL_TLS_CLIENT)
_tls.load_default_certs()
_tls.load_verify_locations(cafile=ca_file)
c.JupyterHubHTTPClient.connector_options = {"ssl": _tls}
os.environ["NODE_EXTRA_CA_CERTS"] = ca_file
# Debian's configurable-http-proxy keeps its modules in /usr/share/nodejs, which Debian's
# node searches but a NodeSource node (same package name, `nodejs`) does not.
if Path("/usr/share/nodejs").is_dir():
    _node_path = os.environ.get("NODE_PATH", "")
    os.environ["NODE_PATH"] = ":".join(p for p in ("/usr/share/nodejs", _node_path) if p)

# Who can log in.
c.JupyterHub.authenticator_class = RejuveAuthenticator
c.RejuveAuthenticator.user_store = _env("USER_STORE", str(state / "hub-users.json"))
c.Authenticator.manage_groups = True
c.Authenticator.admin_users = {
    u.strip() for u in os.environ.get("REJUVE_HUB_ADMIN_USERS", "").split(",") if u.strip()
}
# Roles and removals made with `rejuve users` reach running sessions this quickly. Strict:
# someone removed from the store loses token (API) access too, not only the login cookie;
# our refresh fails only for removed users, so the 6.1 caveat about strictness locking out
# healthy users does not apply.
c.RejuveAuthenticator.auth_refresh_age = int(_env("AUTH_REFRESH_SECONDS", "15"))
c.RejuveAuthenticator.auth_refresh_strict = True

# Notebook servers. Each person's runs as their own unprivileged account (rjv-<name>) with a
# private home, from a runtime outside the checkout that everyone may read; never as the
# Hub's user (root here), which could read the stack's secrets and keys.
runtime = Path(_env("NOTEBOOK_RUNTIME"))
c.JupyterHub.spawner_class = AccountSpawner
c.AccountSpawner.homes_dir = _env("NOTEBOOK_HOMES")
c.AccountSpawner.skeleton_dir = str(_repo / "notebooks")  # a researcher's first notebook
c.Spawner.cmd = [str(runtime / "bin" / "jupyterhub-singleuser")]
c.Spawner.args = []
c.Spawner.default_url = "/lab"
# A coach's work is in the coach app, not a notebook: the Hub sends a coach who holds no
# other role there after login, and AccountSpawner refuses to start them a server.
c.JupyterHub.default_url = landing_url
backend_url = _env("BACKEND_URL")
# JUPYTERHUB_API_TOKEN/_URL/_USER come from the Hub; these let workbench.connect() find
# the backend and verify its certificate without pasted configuration.
c.Spawner.environment = {
    "REJUVE_BACKEND_URL": backend_url,
    "REJUVE_CA_FILE": ca_file,
    "PATH": f"{runtime / 'bin'}:/usr/local/bin:/usr/bin:/bin",
    # Panel (and the Bokeh it shows) ship their JavaScript inside the notebook, not from a
    # CDN a hospital network cannot reach, even for `pn.extension()` without inline=True.
    "PANEL_INLINE": "1",
}
# Tokens the Hub gives servers (JUPYTERHUB_API_TOKEN): the default `server` role plus the
# right to call the backend as the user.
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    f"access:services!service={BACKEND_SERVICE}",
]

# Services.
user_scopes = {f"access:services!service={BACKEND_SERVICE}"}
services = [
    {
        "name": BACKEND_SERVICE,
        # The proxy serves it at /services/rejuve-backend/; the Hub waits (up to the
        # service's `timeout`, 30 s) for it to answer at start-up: start it first.
        "url": backend_url,
        "api_token": _secret("BACKEND_TOKEN"),
        "oauth_client_id": f"service-{BACKEND_SERVICE}",
        "display": False,
    }
]
# The coach app (backend/coach_app/, Panel): proxied at /services/coach/ and logging
# people in with OAuth against the Hub (FACTS.md: Panel's generic provider). Its token
# asks for access to the backend, so the app calls the backend with the coach's own
# token; the Hub grants that scope only because every user holds it (extra_user_scopes).
coach_url = os.environ.get("REJUVE_HUB_COACH_URL")
if coach_url:
    services.append(
        {
            "name": COACH_SERVICE,
            # The Hub waits for it to answer at start-up: the stack starts it first.
            "url": coach_url,
            "oauth_client_id": f"service-{COACH_SERVICE}",
            "oauth_redirect_uri": _env("COACH_REDIRECT_URI"),
            # The service's API token is also its OAuth client secret.
            "api_token": _secret("COACH_TOKEN"),
            "oauth_client_allowed_scopes": [f"access:services!service={BACKEND_SERVICE}"],
            # Part of the platform, not a third party: no "authorize this app?" page.
            "oauth_no_confirm": True,
            # The Hub's "Services" menu links it for whoever may use it: coaches.
            "display": True,
        }
    )
    # Only coaches may use it (the Hub refuses the others' OAuth request, and shows them
    # no link): access comes with the Hub group `coach`, a platform role.
    c.JupyterHub.load_roles = [
        {
            "name": "coach-app",
            "description": "use the coach app",
            "scopes": [f"access:services!service={COACH_SERVICE}"],
            "groups": ["coach"],
        }
    ]
c.JupyterHub.services = services
# Users' own tokens (the token page, API) carry access to our services too (new in 6.0).
c.JupyterHub.extra_user_scopes = user_scopes

# Idle culling of single-user servers needs jupyterhub-idle-culler, which is not
# installed: servers run until stopped (README.md).
