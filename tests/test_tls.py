"""Every connection is TLS with the server verified; anything else is refused.

Redis clients here do not retry: a refusal must show up at once, not after backoff."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from psycopg.conninfo import make_conninfo
from redis.backoff import NoBackoff
from redis.retry import Retry

from backend.stack import certs
from backend.stack.context import StackContext


@pytest.fixture(scope="module")
def foreign_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that did not sign our server certificate."""
    _, cert = certs.make_ca("Somebody else's CA")
    path = tmp_path_factory.mktemp("foreign") / "ca.crt"
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_database_refuses_plain_tcp(ctx: StackContext) -> None:
    dsn = make_conninfo(ctx.db.conninfo("owner"), sslmode="disable")
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(dsn)


def test_database_refuses_wrong_password(ctx: StackContext) -> None:
    dsn = make_conninfo(ctx.db.conninfo("owner"), password="not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn)


def test_database_certificate_from_another_ca_fails(ctx: StackContext, foreign_ca: Path) -> None:
    dsn = make_conninfo(ctx.db.conninfo("owner"), sslrootcert=str(foreign_ca))
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(dsn)


def test_database_session_is_encrypted_and_verified(ctx: StackContext) -> None:
    with ctx.db.connect("query") as conn:
        row = conn.execute(
            "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()"
        ).fetchone()
    assert row is not None and row[0] is True and row[1] in ("TLSv1.2", "TLSv1.3")


def test_database_has_no_unix_socket(ctx: StackContext) -> None:
    with ctx.db.connect("super", "postgres") as conn:
        row = conn.execute("show unix_socket_directories").fetchone()
        listen = conn.execute("show listen_addresses").fetchone()
    assert row == ("",)
    assert listen == ("127.0.0.1",)


def test_redis_refuses_plain_tcp(ctx: StackContext) -> None:
    plain = redis.Redis(
        host=ctx.redis.host,
        port=ctx.redis.port,
        username=ctx.redis.username,
        password=ctx.redis.password,
        socket_timeout=2,
        retry=Retry(NoBackoff(), 0),
    )
    with pytest.raises(redis.ConnectionError):
        plain.ping()


def test_redis_refuses_wrong_password(ctx: StackContext) -> None:
    client = redis.Redis(
        host=ctx.redis.host,
        port=ctx.redis.port,
        username=ctx.redis.username,
        password="wrong",
        ssl=True,
        ssl_ca_certs=str(ctx.redis.ca_file),
        socket_timeout=2,
        retry=Retry(NoBackoff(), 0),
    )
    with pytest.raises(redis.AuthenticationError):
        client.ping()


def test_redis_refuses_the_default_user(ctx: StackContext) -> None:
    client = redis.Redis(
        host=ctx.redis.host,
        port=ctx.redis.port,
        ssl=True,
        ssl_ca_certs=str(ctx.redis.ca_file),
        socket_timeout=2,
        retry=Retry(NoBackoff(), 0),
    )
    with pytest.raises(redis.AuthenticationError):
        client.ping()


def test_redis_certificate_from_another_ca_fails(ctx: StackContext, foreign_ca: Path) -> None:
    client = redis.Redis(
        host=ctx.redis.host,
        port=ctx.redis.port,
        username=ctx.redis.username,
        password=ctx.redis.password,
        ssl=True,
        ssl_ca_certs=str(foreign_ca),
        socket_timeout=2,
        retry=Retry(NoBackoff(), 0),
    )
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        client.ping()


def test_redis_works_with_the_right_everything(ctx: StackContext) -> None:
    client = ctx.redis.client(socket_timeout=2)
    client.set("rejuve:test:tls", "ok", ex=10)
    assert client.get("rejuve:test:tls") == b"ok"


def test_prefect_api_is_https_and_verified(ctx: StackContext, foreign_ca: Path) -> None:
    ok = httpx.get(
        f"{ctx.prefect.api_url}/health",
        verify=ssl.create_default_context(cafile=str(ctx.layout.ca_cert)),
    )
    assert ok.status_code == 200
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(
            f"{ctx.prefect.api_url}/health",
            verify=ssl.create_default_context(cafile=str(foreign_ca)),
        )
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{ctx.prefect.port}/api/health", timeout=3)


def test_prefect_api_wants_credentials_beyond_health(ctx: StackContext) -> None:
    tls = ssl.create_default_context(cafile=str(ctx.layout.ca_cert))
    flows = f"{ctx.prefect.api_url}/flows/filter"
    assert httpx.post(flows, json={}, verify=tls).status_code == 401
    user, _ = ctx.prefect.basic_auth
    assert httpx.post(flows, json={}, verify=tls, auth=(user, "guess")).status_code == 401
    listed = httpx.post(flows, json={}, verify=tls, auth=ctx.prefect.basic_auth)
    assert listed.status_code == 200
    assert {"ingest-file", "drop-folder"} <= {f["name"] for f in listed.json()}


def test_secrets_file_is_private(ctx: StackContext) -> None:
    mode = ctx.layout.secrets_file.stat().st_mode & 0o777
    assert mode == 0o600
    assert (ctx.layout.server_key.stat().st_mode & 0o777) == 0o600
