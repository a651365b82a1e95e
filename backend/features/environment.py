"""What `feature_repo/feature_store.yaml` reads from the environment, built from the stack's
runtime (addresses, CA, generated passwords), so the `feast` CLI and our own code use the
same file with no secret in it.

Two database identities: `apply` writes the registry (the `feast` role), `serve` only reads
it (the `features` role; also the offline store's reader and the materialiser's claim)."""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

from backend.exceptions import SetupError
from backend.settings import REPO_ROOT

if TYPE_CHECKING:
    from feast import FeatureStore

    from backend.runtime import Runtime

REPO = REPO_ROOT / "feature_repo"
Purpose = Literal["apply", "serve"]
# Redis database for the online store: the rate limiter and token caches live in db 0.
ONLINE_DB = 1
_UNSAFE = re.compile(r'[,"\\]')


def feast_environment(rt: Runtime, purpose: Purpose = "serve") -> dict[str, str]:
    """The FEAST_* variables of the YAML. Passwords go URL-encoded into the registry URL;
    in the Redis string a ',' or '"' would cut the value (Feast splits on ',' and
    json-decodes each part), so such a password is refused rather than half-used."""
    db, red = rt.db, rt.redis
    registry_key = "feast" if purpose == "apply" else "features"
    if _UNSAFE.search(red.password) or _UNSAFE.search(red.username):
        raise SetupError("the Redis password contains ',', '\"' or '\\': Feast cannot use it")
    return {
        "FEAST_PG_HOST": db.host,
        "FEAST_PG_PORT": str(db.port),
        "FEAST_PG_DATABASE": db.dbname,
        "FEAST_PG_CA_FILE": str(db.ca_file),
        "FEAST_REGISTRY_USER": quote(db.user_for(registry_key), safe=""),
        "FEAST_REGISTRY_PASSWORD": quote(_password(rt, registry_key), safe=""),
        "FEAST_OFFLINE_USER": db.user_for("features"),
        "FEAST_OFFLINE_PASSWORD": _password(rt, "features"),
        "FEAST_REDIS_HOST": red.host,
        "FEAST_REDIS_PORT": str(red.port),
        "FEAST_REDIS_CA_FILE": str(red.ca_file),
        "FEAST_REDIS_USER": red.username,
        "FEAST_REDIS_PASSWORD": red.password,
        "FEAST_REDIS_DB": str(ONLINE_DB),
    }


def _password(rt: Runtime, key: str) -> str:
    try:
        return rt.db.passwords[key]
    except KeyError:
        raise SetupError(
            f"no credentials for database role '{key}'", "run `rejuve up` (or migrate) once"
        ) from None


def render_config(env: dict[str, str], repo: Path = REPO) -> str:
    """The YAML with our variables substituted; a variable we do not set is an error here
    (Feast's own expansion would leave `${X}` in place and fail later, obscurely)."""
    text = (repo / "feature_store.yaml").read_text()
    try:
        return string.Template(text).substitute(env)
    except KeyError as e:
        raise SetupError(f"feature_store.yaml uses {e.args[0]}, which nothing sets") from None


def open_store(rt: Runtime, purpose: Purpose = "serve", repo: Path = REPO) -> FeatureStore:
    """A FeatureStore on this stack, configured in-process (no os.environ change). Build one
    per process: it holds the registry cache and the Redis client."""
    import yaml  # type: ignore[import-untyped]
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    raw = yaml.safe_load(render_config(feast_environment(rt, purpose), repo))
    config = RepoConfig(**raw)
    config.repo_path = repo
    return FeatureStore(repo_path=str(repo), config=config)


def close_store(store: FeatureStore) -> None:
    """Release the registry's database connections (SQLAlchemy pools) before exit."""
    registry = getattr(store, "_registry", None)
    inner = getattr(registry, "registry", registry)  # behind a caching wrapper, or not
    for name in ("write_engine", "read_engine"):
        engine = getattr(inner, name, None)
        if engine is not None:
            engine.dispose()


def apply_repo(rt: Runtime, repo: Path = REPO) -> None:
    """`feast apply` on the repository as the registry writer (idempotent): what `rejuve up`
    runs after the migrations, so the backend finds its feature views on a new stack."""
    import os
    import subprocess
    import sys

    feast = Path(sys.executable).parent / "feast"
    env = {**os.environ, **feast_environment(rt, "apply")}
    done = subprocess.run(
        [str(feast), "-c", str(repo), "apply"], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise SetupError(f"feast apply failed: {tail[0]}", "run `rejuve features apply` to see why")
