# Production example: the same Hub as jupyterhub_config.py, with people logging in through
# the organisation's OpenID Connect provider instead of the local account store.
#
#   jupyterhub -f deploy/jupyterhub/oidc_production.py
#
# Needs `oauthenticator` (17.4 checked) in the Hub's environment. Reads every variable
# jupyterhub_config.py reads (README.md), plus the REJUVE_HUB_OIDC_* ones below. It is an
# example to adapt, validated by tests/identity/test_hub.py, not a tested deployment.
#
# Platform roles come from the provider's groups claim: a group named <prefix><role>
# (default prefix "rejuve-", e.g. "rejuve-coach") becomes the Hub group <role>, which the
# backend reads as the platform role. Other groups are ignored; someone with no platform
# role cannot log in.
import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821  (provided by JupyterHub's config loader)

_base = Path(__file__).resolve().with_name("jupyterhub_config.py")
if not _base.is_file():
    # load_subconfig would silently load nothing.
    raise SystemExit(f"oidc_production: {_base} is missing")
load_subconfig(str(_base))  # noqa: F821  (provided by the config loader)

_repo = Path(__file__).resolve().parents[2]
if str(_repo) not in sys.path:
    sys.path.insert(0, str(_repo))

from backend.identity import PLATFORM_ROLES  # noqa: E402
from backend.identity.hub_auth import USERNAME_RE  # noqa: E402


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(f"REJUVE_HUB_{name}", default)
    if value is None or value == "":
        raise SystemExit(f"oidc_production: REJUVE_HUB_{name} is not set")
    return value


def _secret(name: str) -> str:
    path = os.environ.get(f"REJUVE_HUB_{name}_FILE")
    value = Path(path).read_text().strip() if path else os.environ.get(f"REJUVE_HUB_{name}")
    if not value:
        raise SystemExit(f"oidc_production: set REJUVE_HUB_{name}_FILE or REJUVE_HUB_{name}")
    return value


public_url = _env("PUBLIC_URL").rstrip("/")  # what browsers see, e.g. https://hub.example.org
groups_claim = _env("OIDC_GROUPS_CLAIM", "groups")
group_prefix = _env("OIDC_GROUP_PREFIX", "rejuve-")


def platform_roles(auth_state: dict) -> list[str]:
    """The provider's groups claim -> Hub groups named after platform roles."""
    claimed = auth_state.get("oauth_user", {}).get(groups_claim) or []
    return sorted(
        g.removeprefix(group_prefix)
        for g in claimed
        if isinstance(g, str)
        and g.startswith(group_prefix)
        and g.removeprefix(group_prefix) in PLATFORM_ROLES
    )


c.JupyterHub.authenticator_class = "generic-oauth"
a = c.GenericOAuthenticator
a.login_service = _env("OIDC_LOGIN_SERVICE", "Rejuve sign-in")
a.client_id = _env("OIDC_CLIENT_ID")
a.client_secret = _secret("OIDC_CLIENT_SECRET")
a.oauth_callback_url = f"{public_url}/hub/oauth_callback"
a.authorize_url = _env("OIDC_AUTHORIZE_URL")
a.token_url = _env("OIDC_TOKEN_URL")
a.userdata_url = _env("OIDC_USERINFO_URL")
a.scope = _env("OIDC_SCOPES", "openid profile email").split()
a.username_claim = _env("OIDC_USERNAME_CLAIM", "preferred_username")
# The same names as the local store allows: a name is a URL segment and a directory.
# Providers whose usernames do not fit (e.g. e-mail addresses) are refused at login.
a.username_pattern = f"^{USERNAME_RE.pattern}$"
a.enable_pkce = True
a.manage_groups = True
a.auth_state_groups_key = platform_roles
a.allowed_groups = set(PLATFORM_ROLES)
# Hub admins can enter every user's server: only the people in REJUVE_HUB_ADMIN_USERS.
a.admin_groups = set()
# Keep the provider's tokens (encrypted) so refreshes re-read the groups claim: a role
# removed at the provider is removed here within auth_refresh_age.
a.enable_auth_state = True
a.auth_refresh_age = int(_env("AUTH_REFRESH_SECONDS", "300"))
# Not strict: a provider refresh token expiring would otherwise cut running notebooks off
# the API until their owner logs in again. The price: a token-only client keeps a removed
# user's access until the token is revoked (revoke via the Hub API when offboarding).
a.auth_refresh_strict = False
logout = os.environ.get("REJUVE_HUB_OIDC_LOGOUT_URL")
if logout:
    a.logout_redirect_url = logout
ca = os.environ.get("REJUVE_HUB_OIDC_CA_FILE")
if ca:
    # A provider behind a private CA.
    a.http_request_kwargs = {"ca_certs": ca}
# auth_state encryption key (32 bytes, hex or base64): `openssl rand -hex 32 > FILE`.
c.CryptKeeper.keys = [_secret("CRYPT_KEY")]

# The base config's AccountSpawner isolates people by Unix account on the Hub's own
# machine. A deployment usually wants resource limits and its own machines for notebooks:
# name that spawner here (e.g. "systemd" from jupyterhub-systemdspawner, or a Kubernetes
# spawner) and configure it alongside this file. SimpleLocalProcessSpawner is refused: it
# runs everyone's code as the Hub's user, with no isolation between people.
spawner = _env("SPAWNER_CLASS")
if spawner in ("simple", "jupyterhub.spawner.SimpleLocalProcessSpawner"):
    raise SystemExit("oidc_production: the simple spawner has no isolation between users")
c.JupyterHub.spawner_class = spawner
