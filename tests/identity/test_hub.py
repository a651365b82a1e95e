"""A real JupyterHub (and its proxy) from deploy/jupyterhub, on ports and a state directory
of its own, with accounts made by `add_user`: logins, the admin API, token validation as
the backend does it, a spawned JupyterLab, and one browser login.

Needs the Debian packages `node-configurable-http-proxy` and `chromium`; not the local
stack."""

from __future__ import annotations

import contextlib
import http.server
import importlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import httpx
import pytest
from traitlets.config import Config, PyFileConfigLoader

from backend.exceptions import UserError
from backend.identity import PLATFORM_ROLES, accounts, hub_auth, notebook_runtime
from backend.identity.hub_client import HubIdentity, HubTokenValidator, HubUnavailable
from backend.stack import certs, system
from backend.stack.layout import Layout
from tests.browser import launch

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "jupyterhub" / "jupyterhub_config.py"
JUPYTERHUB = str(Path(sys.executable).parent / "jupyterhub")
# The local stack's ports: never ours, even if free right now.
TAKEN = {54329, 6380, 4200, 8443}
# Cheaper hashes keep the module fast; the cost is read from each hash, not configured.
ROUNDS = 10
PASSWORDS = {
    "alice": "alice-correct-horse",
    "bob": "bob-battery-staple",
    "ada": "ada-analytical-engine",
    "carol": "carol-leaving-soon",
}
GROUPS = {
    "alice": ["member"],
    "bob": ["coach", "researcher"],
    "ada": ["admin", "steward"],
    "carol": ["auditor"],
}


def _free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in TAKEN:
            return port


@dataclass(frozen=True)
class Hub:
    url: str
    api_url: str
    state: Path
    ca_file: Path
    store: Path
    backend_token: str
    log: Path

    def client(self) -> httpx.Client:
        tls = ssl.create_default_context(cafile=str(self.ca_file))
        return httpx.Client(base_url=self.url, verify=tls, timeout=30, follow_redirects=False)

    def validator(self, cache_seconds: float = 30.0) -> HubTokenValidator:
        return HubTokenValidator(self.api_url, self.backend_token, self.ca_file, cache_seconds)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"rejuve-backend stand-in\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextlib.contextmanager
def _stand_in_backend(layout: Layout) -> Iterator[str]:
    """The Hub waits for a service with a `url` at start-up: something must answer, over
    TLS from our CA as the real backend does."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", _free_port()), _Ok)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(layout.server_cert, layout.server_key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _processes_under(root: Path) -> list[int]:
    """Processes whose working directory is in `root`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (proc / "cwd").readlink().is_relative_to(root):
                found.append(int(proc.name))
    return found


def _stop(proc: subprocess.Popen[bytes], state: Path) -> None:
    if proc.poll() is None:
        # SIGTERM: the Hub stops the servers it spawned and its proxy on the way out.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    # Whatever survived a Hub that died: the proxy inherits the Hub's working directory
    # (our state directory), notebook servers run in their homes under it.
    for pid in _processes_under(state):
        system.terminate(pid, timeout=10)


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    state = Path("/var/lib/rejuve/stacks") / f"test-hub-{secrets.token_hex(4)}"
    try:
        with _stand_in_backend(_tls_for(state)) as backend_url:
            yield from _run_hub(state, backend_url)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _tls_for(state: Path) -> Layout:
    layout = Layout(state)
    layout.ensure()
    # Others may pass through (to their notebook homes), not list.
    state.chmod(0o711)
    certs.ensure(layout)
    return layout


def _secret_file(path: Path, value: str) -> Path:
    path.write_text(value)
    path.chmod(0o600)
    return path


def _run_hub(state: Path, backend_url: str) -> Iterator[Hub]:
    layout = Layout(state)
    store = state / "hub-users.json"
    for name, password in PASSWORDS.items():
        hub_auth.add_user(store, name, password, GROUPS[name], rounds=ROUNDS)
    backend_token = secrets.token_hex(32)
    port = _free_port()
    env = {
        **os.environ,
        "REJUVE_HUB_STATE_DIR": str(state / "hub"),
        "REJUVE_HUB_PORT": str(port),
        "REJUVE_HUB_API_PORT": str(_free_port()),
        "REJUVE_HUB_PROXY_API_PORT": str(_free_port()),
        "REJUVE_HUB_TLS_CERT": str(layout.server_cert),
        "REJUVE_HUB_TLS_KEY": str(layout.server_key),
        "REJUVE_HUB_CA_FILE": str(layout.ca_cert),
        "REJUVE_HUB_USER_STORE": str(store),
        "REJUVE_HUB_ADMIN_USERS": "ada",
        "REJUVE_HUB_AUTH_REFRESH_SECONDS": "1",
        "REJUVE_HUB_BACKEND_URL": backend_url,
        "REJUVE_HUB_BACKEND_TOKEN_FILE": str(_secret_file(state / "backend.token", backend_token)),
        "REJUVE_HUB_NOTEBOOK_RUNTIME": str(notebook_runtime.ensure(REPO)),
        "REJUVE_HUB_NOTEBOOK_HOMES": str(state / "notebooks"),
    }
    log = layout.log_file("jupyterhub")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [JUPYTERHUB, "-f", str(CONFIG)],
            cwd=state,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        h = Hub(
            url=f"https://127.0.0.1:{port}",
            api_url=f"https://127.0.0.1:{port}/hub/api",
            state=state,
            ca_file=layout.ca_cert,
            store=store,
            backend_token=backend_token,
            log=log,
        )
        _wait_up(h, proc)
        yield h
    finally:
        _stop(proc, state)
        for name in PASSWORDS:
            accounts.remove(name)


def _wait_up(h: Hub, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    with h.client() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"jupyterhub exited with {proc.returncode}:\n{h.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/hub/api/").status_code == 200:
                    return
            time.sleep(0.25)
    pytest.fail(f"jupyterhub did not answer within 60 s:\n{h.log_tail()}")


def _xsrf(html: str) -> str:
    m = re.search(r'name="_xsrf" value="([^"]+)"', html)
    assert m, "no _xsrf field on the page"
    return m.group(1)


def login(client: httpx.Client, name: str, password: str) -> httpx.Response:
    page = client.get("/hub/login")
    assert page.status_code == 200
    return client.post(
        "/hub/login",
        data={"username": name, "password": password, "_xsrf": _xsrf(page.text)},
    )


def new_token(client: httpx.Client, name: str, **body: object) -> dict[str, str]:
    """POST /hub/api/users/{name}/tokens as the logged-in user (cookie + XSRF header)."""
    xsrf = client.cookies.get("_xsrf", path="/hub/")
    r = client.post(
        f"/hub/api/users/{name}/tokens",
        json={"note": "test", **body},
        headers={"X-XSRFToken": xsrf or ""},
    )
    assert r.status_code == 201, r.text
    model: dict[str, str] = r.json()
    return model


def logged_in_token(h: Hub, name: str, **body: object) -> dict[str, str]:
    with h.client() as client:
        assert login(client, name, PASSWORDS[name]).status_code == 302
        return new_token(client, name, **body)


def test_store_keeps_hashes_only_in_a_private_file(tmp_path: Path) -> None:
    store = tmp_path / "accounts" / "hub-users.json"
    hub_auth.add_user(store, "dave", "dave-first-password", ["coach", "member"], rounds=4)
    assert store.stat().st_mode & 0o777 == 0o600
    assert "dave-first-password" not in store.read_text()
    assert [(u.name, u.groups) for u in hub_auth.list_users(store)] == [
        ("dave", ("coach", "member"))
    ]
    hub_auth.set_password(store, "dave", "dave-second-password", rounds=4)
    assert hub_auth.verify_password(store, "dave", "dave-first-password") is None
    assert hub_auth.verify_password(store, "dave", "dave-second-password") is not None
    assert hub_auth.set_groups(store, "dave", ["auditor"]).groups == ("auditor",)
    hub_auth.remove_user(store, "dave")
    assert hub_auth.list_users(store) == []
    with pytest.raises(UserError, match="no user"):
        hub_auth.remove_user(store, "dave")


def test_store_refuses_bad_input(tmp_path: Path) -> None:
    store = tmp_path / "hub-users.json"
    hub_auth.add_user(store, "erin", "erin-long-password", rounds=4)
    with pytest.raises(UserError, match="exists"):
        hub_auth.add_user(store, "erin", "another-long-password", rounds=4)
    for name in ("../root", "Erin", "e", "erin-", "a" * 33, "erin@example.org"):
        with pytest.raises(UserError, match="invalid user name"):
            hub_auth.add_user(store, name, "another-long-password", rounds=4)
    with pytest.raises(UserError, match="unknown role"):
        hub_auth.add_user(store, "frank", "another-long-password", ["superuser"], rounds=4)
    with pytest.raises(UserError, match="at least one role"):
        hub_auth.add_user(store, "frank", "another-long-password", [], rounds=4)
    with pytest.raises(UserError, match="too short"):
        hub_auth.add_user(store, "frank", "short", rounds=4)
    with pytest.raises(UserError, match="too long"):
        hub_auth.add_user(store, "frank", "x" * 73, rounds=4)
    assert hub_auth.lookup(store, "frank") is None
    # never accepted at set time, so never a match on its first 72 bytes
    assert hub_auth.verify_password(store, "erin", "erin-long-password" + "x" * 60) is None


def test_store_writable_by_others_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "hub-users.json"
    hub_auth.add_user(store, "erin", "erin-long-password", rounds=4)
    store.chmod(0o620)
    with pytest.raises(hub_auth.StoreError, match="writable by group or others"):
        hub_auth.verify_password(store, "erin", "erin-long-password")
    store.chmod(0o640)  # readable only: tightened, still usable
    assert hub_auth.verify_password(store, "erin", "erin-long-password") is not None
    assert store.stat().st_mode & 0o777 == 0o600


def test_right_password_logs_in(hub: Hub) -> None:
    with hub.client() as client:
        r = login(client, "alice", PASSWORDS["alice"])
        assert r.status_code == 302, r.text
        me = client.get("/hub/api/user", headers={"X-XSRFToken": client.cookies["_xsrf"]})
        assert me.status_code == 200
        assert me.json()["name"] == "alice"


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("alice", "not-alices-password"),
        ("alice", PASSWORDS["bob"]),
        ("nobody", "whatever-long-enough"),
        ("Alice/../ada", PASSWORDS["ada"]),
    ],
)
def test_wrong_password_or_unknown_user_is_refused(hub: Hub, name: str, password: str) -> None:
    with hub.client() as client:
        r = login(client, name, password)
        assert r.status_code == 403
        assert "Invalid username or password" in r.text
        assert client.get("/hub/home").status_code == 302  # back to the login page


def test_unknown_user_costs_a_bcrypt_check_too(hub: Hub) -> None:
    def timed(name: str) -> float:
        t = time.perf_counter()
        assert hub_auth.verify_password(hub.store, name, "not-the-password") is None
        return time.perf_counter() - t

    known = min(timed("alice") for _ in range(3))
    unknown = min(timed("nobody") for _ in range(3))
    malformed = min(timed("../../etc") for _ in range(3))
    assert 0.5 < unknown / known < 2 and 0.5 < malformed / known < 2


def test_admin_api_lists_users_with_their_groups(hub: Hub) -> None:
    for name in ("alice", "bob"):
        logged_in_token(hub, name)  # the Hub learns users (and groups) at their login
    admin = logged_in_token(hub, "ada")["token"]
    with hub.client() as client:
        r = client.get("/hub/api/users", headers={"Authorization": f"token {admin}"})
        assert r.status_code == 200, r.text
        users = {u["name"]: u for u in r.json()}
        assert sorted(users["alice"]["groups"]) == ["member"]
        assert sorted(users["bob"]["groups"]) == ["coach", "researcher"]
        assert users["ada"]["admin"] is True and users["bob"]["admin"] is False
        services = client.get("/hub/api/services", headers={"Authorization": f"token {admin}"})
        # (the coach app's service exists where the stack runs it: tests/coach_app)
        assert "rejuve-backend" in set(services.json())
        # a non-admin's token may not list users
        alice = logged_in_token(hub, "alice")["token"]
        r = client.get("/hub/api/users", headers={"Authorization": f"token {alice}"})
        assert r.status_code == 403


def test_users_token_validates_with_groups_and_roles(hub: Hub) -> None:
    token = logged_in_token(hub, "bob")["token"]
    with hub.validator() as v:
        identity = v.validate(token)
        assert identity == HubIdentity(
            name="bob",
            groups=frozenset({"coach", "researcher"}),
            roles=frozenset({"coach", "researcher"}),
            admin=False,
        )
        assert v.service_name() == "rejuve-backend"
        assert v.validate(secrets.token_hex(16)) is None
        assert v.validate("") is None
        assert v.validate("a\r\nX-Injected: 1") is None


def test_token_without_access_to_the_backend_is_refused(hub: Hub) -> None:
    narrow = logged_in_token(hub, "alice", scopes=["read:users:name!user=alice"])["token"]
    with hub.validator() as v:
        assert v.validate(narrow) is None


def test_revoked_token_is_refused_after_the_cache_window(hub: Hub) -> None:
    model = logged_in_token(hub, "alice")
    with hub.validator(cache_seconds=1.0) as v:
        assert v.validate(model["token"]) is not None
        with hub.client() as client:
            r = client.delete(
                f"/hub/api/users/alice/tokens/{model['id']}",
                headers={"Authorization": f"token {model['token']}"},
            )
            assert r.status_code == 204, r.text
        # still cached: the window is the price of not asking the Hub on every request
        assert v.validate(model["token"]) is not None
        time.sleep(1.1)
        assert v.validate(model["token"]) is None


def test_a_token_in_use_is_rechecked_in_the_background_within_the_window(hub: Hub) -> None:
    """Past half its window, a cached answer is re-checked with the Hub off the request's
    path (busy callers never wait for the Hub), and the window still bounds every answer:
    a token revoked after the re-check is refused once the re-check's window ends."""
    model = logged_in_token(hub, "alice")
    with hub.validator(cache_seconds=2.0) as v:
        t0 = time.monotonic()
        assert v.validate(model["token"]) is not None
        time.sleep(1.2)
        assert v.validate(model["token"]) is not None  # answered from memory, re-check starts
        time.sleep(0.5)
        with hub.client() as client:
            r = client.delete(
                f"/hub/api/users/alice/tokens/{model['id']}",
                headers={"Authorization": f"token {model['token']}"},
            )
            assert r.status_code == 204, r.text
        time.sleep(max(0.0, t0 + 2.3 - time.monotonic()))
        # The first answer's window has ended; the re-check's (asked at ~1.2 s) has not.
        assert v.validate(model["token"]) is not None
        time.sleep(max(0.0, t0 + 3.4 - time.monotonic()))
        assert v.validate(model["token"]) is None


def test_store_changes_reach_the_hub_without_a_new_login(hub: Hub) -> None:
    token = logged_in_token(hub, "carol")["token"]
    with hub.validator(cache_seconds=0) as v:
        first = v.validate(token)
        assert first is not None and first.roles == {"auditor"}
        hub_auth.set_groups(hub.store, "carol", ["auditor", "researcher"])
        time.sleep(1.2)  # REJUVE_HUB_AUTH_REFRESH_SECONDS=1 in this Hub
        changed = v.validate(token)
        assert changed is not None and changed.roles == {"auditor", "researcher"}
        hub_auth.remove_user(hub.store, "carol")
        time.sleep(1.2)
        assert v.validate(token) is None
    with hub.client() as client:
        assert login(client, "carol", PASSWORDS["carol"]).status_code == 403


def test_hub_down_is_an_error_not_a_refusal(hub: Hub) -> None:
    with (
        HubTokenValidator(
            f"https://127.0.0.1:{_free_port()}/hub/api",
            hub.backend_token,
            hub.ca_file,
            service_name="rejuve-backend",
            timeout=2,
        ) as v,
        pytest.raises(HubUnavailable),
    ):
        v.validate(secrets.token_hex(16))


def test_backend_service_is_proxied_over_verified_tls(hub: Hub) -> None:
    with hub.client() as client:
        r = client.get("/services/rejuve-backend/healthz")
        assert r.status_code == 200
        assert r.text == "rejuve-backend stand-in\n"


def test_spawned_server_is_up_and_its_token_reaches_the_backend(hub: Hub) -> None:
    token = logged_in_token(hub, "alice")["token"]
    auth = {"Authorization": f"token {token}"}
    with hub.client() as client:
        r = client.post("/hub/api/users/alice/server", headers=auth)
        assert r.status_code in (201, 202), r.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            server = client.get("/hub/api/users/alice", headers=auth).json()["servers"].get("")
            if server and server["ready"]:
                break
            time.sleep(0.25)
        else:
            pytest.fail(f"alice's server did not start:\n{hub.log_tail()}")
        status = client.get("/user/alice/api/status", headers=auth)
        assert status.status_code == 200, status.text
        assert "started" in status.json()

    # What a notebook's workbench.connect() finds in its environment.
    home = accounts.home_of(hub.state / "notebooks", "alice")
    pids = _processes_under(home)
    assert pids, "no process runs in alice's home"
    environ = dict(
        kv.split("=", 1)
        for kv in Path(f"/proc/{pids[0]}/environ").read_bytes().decode().split("\0")
        if "=" in kv
    )
    # Her own unprivileged account, not the Hub's (root): it cannot read the stack's
    # secrets, the TLS key, or anyone else's home.
    account = pwd.getpwnam(accounts.account_name("alice"))
    assert account.pw_uid != 0 and account.pw_dir == str(home)
    assert all(Path(f"/proc/{pid}").stat().st_uid == account.pw_uid for pid in pids)
    assert (home.stat().st_uid, home.stat().st_mode & 0o777) == (account.pw_uid, 0o700)
    # The platform's notebooks are there for her, in ~/notebooks/ as README.md says, hers
    # to change.
    first = home / "notebooks" / "01_first_cohort.ipynb"
    assert first.read_bytes() == (REPO / "notebooks" / "01_first_cohort.ipynb").read_bytes()
    assert first.stat().st_uid == account.pw_uid
    assert environ["HOME"] == str(home) and environ["USER"] == account.pw_name
    secrets_readable = subprocess.run(
        [
            "runuser",
            "-u",
            account.pw_name,
            "--",
            "cat",
            str(hub.state / "backend.token"),
            str(hub.state / "tls" / "server.key"),
        ],
        capture_output=True,
        text=True,
    )
    assert secrets_readable.returncode != 0 and "Permission denied" in secrets_readable.stderr
    assert secrets_readable.stdout == ""
    assert environ["REJUVE_CA_FILE"] == str(hub.ca_file)
    assert environ["REJUVE_BACKEND_URL"].startswith("https://127.0.0.1:")
    assert environ["PANEL_INLINE"] == "1"  # plots carry their JavaScript: no CDN
    assert environ["JUPYTERHUB_USER"] == "alice"
    with hub.validator() as v:
        identity = v.validate(environ["JUPYTERHUB_API_TOKEN"])
    assert identity is not None and identity.name == "alice" and identity.roles == {"member"}


def test_browser_login_lands_in_jupyterlab(hub: Hub) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw, hub.ca_file)
        try:
            page = browser.new_page()
            page.goto(f"{hub.url}/hub/login")
            page.fill("#username_input", "bob")
            page.fill("#password_input", PASSWORDS["bob"])
            page.click("#login_submit")
            # A new person lands in the researcher's first notebook, not on the Launcher.
            page.wait_for_url(
                re.compile(r"/user/bob/lab/tree/notebooks/01_first_cohort\.ipynb"),
                timeout=60_000,
            )
            page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
            assert "JupyterLab" in page.title() or "01_first_cohort" in page.title()
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
            tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
            assert "01_first_cohort.ipynb" in tab.inner_text()
            # JupyterLab asks about "official Jupyter news" a few seconds after a first
            # start; our settings override says never.
            page.wait_for_timeout(8_000)
            assert page.get_by_text("Jupyter news").count() == 0
        finally:
            browser.close()


PRODUCTION = REPO / "deploy" / "jupyterhub" / "oidc_production.py"


@pytest.fixture
def production_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Dummy values for everything oidc_production.py (and the base config it loads) read.
    Loading a config changes os.environ (NODE_* for the proxy): restored afterwards."""
    state = Path("/var/lib/rejuve/stacks") / f"test-hub-{secrets.token_hex(4)}"
    layout = Layout(state)
    layout.ensure()
    certs.ensure(layout)
    secret = state / "oidc-client.secret"
    secret.write_text("client-secret-from-a-file\n")
    crypt = state / "crypt.key"
    crypt.write_text(secrets.token_hex(32))
    env = {
        "REJUVE_HUB_STATE_DIR": str(state / "hub"),
        "REJUVE_HUB_PORT": "8444",
        "REJUVE_HUB_API_PORT": "8081",
        "REJUVE_HUB_PROXY_API_PORT": "8082",
        "REJUVE_HUB_TLS_CERT": str(layout.server_cert),
        "REJUVE_HUB_TLS_KEY": str(layout.server_key),
        "REJUVE_HUB_CA_FILE": str(layout.ca_cert),
        "REJUVE_HUB_BACKEND_URL": "https://127.0.0.1:8443",
        "REJUVE_HUB_BACKEND_TOKEN": "backend-token",
        "REJUVE_HUB_PUBLIC_URL": "https://hub.rejuve.example/",
        "REJUVE_HUB_OIDC_CLIENT_ID": "rejuve-hub",
        "REJUVE_HUB_OIDC_CLIENT_SECRET_FILE": str(secret),
        "REJUVE_HUB_OIDC_AUTHORIZE_URL": "https://id.example/auth",
        "REJUVE_HUB_OIDC_TOKEN_URL": "https://id.example/token",
        "REJUVE_HUB_OIDC_USERINFO_URL": "https://id.example/userinfo",
        "REJUVE_HUB_CRYPT_KEY_FILE": str(crypt),
        "REJUVE_HUB_SPAWNER_CLASS": "systemd",
        "REJUVE_HUB_NOTEBOOK_RUNTIME": "/opt/rejuve/notebook-runtime/example",
        "REJUVE_HUB_NOTEBOOK_HOMES": str(state / "notebooks"),
    }
    try:
        with mock.patch.dict(os.environ, env):
            yield env
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _load(path: Path) -> Config:
    return PyFileConfigLoader(path.name, str(path.parent)).load_config()


def test_production_config_loads_with_oidc(production_env: dict[str, str]) -> None:
    cfg = _load(PRODUCTION)
    a = cfg.GenericOAuthenticator
    assert cfg.JupyterHub.authenticator_class == "generic-oauth"
    assert a.client_secret == "client-secret-from-a-file"
    assert a.oauth_callback_url == "https://hub.rejuve.example/hub/oauth_callback"
    assert a.manage_groups and a.enable_auth_state and a.allowed_groups == set(PLATFORM_ROLES)
    key = Path(production_env["REJUVE_HUB_CRYPT_KEY_FILE"]).read_text()
    assert cfg.CryptKeeper["keys"] == [key]  # .keys is the dict method
    assert cfg.JupyterHub.spawner_class == "systemd" and cfg.Spawner.args == []
    # kept from the base config
    assert cfg.JupyterHub.ssl_cert == production_env["REJUVE_HUB_TLS_CERT"]
    assert cfg.JupyterHub.services[0]["name"] == "rejuve-backend"
    roles = a.auth_state_groups_key(
        {"oauth_user": {"groups": ["rejuve-coach", "staff", "rejuve-root", "rejuve-member"]}}
    )
    assert roles == ["coach", "member"]
    assert a.auth_state_groups_key({"oauth_user": {}}) == []


def test_production_config_refuses_what_is_missing_or_unsafe(
    production_env: dict[str, str],
) -> None:
    with (
        mock.patch.dict(os.environ, {"REJUVE_HUB_SPAWNER_CLASS": "simple"}),
        pytest.raises(SystemExit, match="no isolation"),
    ):
        _load(PRODUCTION)
    del os.environ["REJUVE_HUB_OIDC_CLIENT_SECRET_FILE"]
    with pytest.raises(SystemExit, match="OIDC_CLIENT_SECRET"):
        _load(PRODUCTION)


def test_production_config_names_real_oauthenticator_settings(
    production_env: dict[str, str],
) -> None:
    generic = importlib.import_module("oauthenticator.generic")
    cfg = _load(PRODUCTION)
    authenticator = generic.GenericOAuthenticator(config=cfg)
    unknown = set(cfg.GenericOAuthenticator) - set(authenticator.trait_names())
    assert not unknown
    assert authenticator.username_claim == "preferred_username"
    assert authenticator.validate_username("jane.doe")
    assert not authenticator.validate_username("jane@example.org")
