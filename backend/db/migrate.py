"""Apply Alembic migrations as the owner, then give application roles their passwords."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy import create_engine, pool

from backend.db.access import DatabaseAccess, scram_verifier
from backend.settings import REPO_ROOT


def _config() -> Config:
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "backend" / "migrations"))
    return cfg


def _run(access: DatabaseAccess, action: str, target: str) -> None:
    cfg = _config()
    engine = create_engine(access.sqlalchemy_url("owner"), poolclass=pool.NullPool)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        getattr(command, action)(cfg, target)
    engine.dispose()


def upgrade(access: DatabaseAccess, target: str = "head") -> None:
    _run(access, "upgrade", target)
    set_app_passwords(access)


def downgrade(access: DatabaseAccess, target: str = "base") -> None:
    _run(access, "downgrade", target)


def current(access: DatabaseAccess) -> str | None:
    with access.connect("owner") as conn:
        exists = conn.execute("select to_regclass('public.alembic_version')").fetchone()
        if not exists or exists[0] is None:
            return None
        row = conn.execute("select version_num from alembic_version").fetchone()
        return str(row[0]) if row else None


def head() -> str:
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory.from_config(_config()).get_current_head())


def set_app_passwords(access: DatabaseAccess) -> None:
    """Enable LOGIN with a generated password for each application role.

    The owner created these roles (CREATEROLE), so it holds ADMIN on them; the
    password travels as a SCRAM verifier computed on the client."""
    with access.connect("owner", autocommit=True) as conn:
        for key, role in access.roles.app.items():
            verifier = scram_verifier(conn, role, access.passwords[key])
            conn.execute(
                sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(verifier)
                )
            )
