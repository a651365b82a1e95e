"""The repository works with the plain `feast` CLI through `rejuve features`, and the roles
behind it can do what they are for and nothing more."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from backend.runtime import Runtime
from tests.features.conftest import REJUVE


def _rejuve(*args: str) -> str:
    done = subprocess.run([str(REJUVE), *args], check=True, capture_output=True, text=True)
    return done.stdout


def test_plan_apply_and_list(ctx: Runtime, applied: None) -> None:
    assert "No changes to infrastructure" in _rejuve("features", "plan")
    views = _rejuve("features", "list")
    for name in ("daily_activity", "cardio", "sleep", "latest_labs"):
        assert name in views
    services = _rejuve("features", "list", "feature-services")
    assert "coaching_overview" in services and "research_model" in services


def test_registry_reader_cannot_write_the_registry(ctx: Runtime, applied: None) -> None:
    with ctx.db.connect("features") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("delete from feast_registry.feature_views")


def test_registry_writer_reads_no_health_data(ctx: Runtime) -> None:
    for table in ("analytics.member_daily", "analytics.feature_member_daily"):
        with ctx.db.connect("feast") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"select 1 from {table} limit 1")


def test_feature_role_reads_views_not_the_tables_under_them(ctx: Runtime) -> None:
    with ctx.db.connect("features") as conn:
        conn.execute("select 1 from analytics.feature_cardio limit 1")
    for table in ("analytics.member_daily", "processed.observations", "governance.members"):
        with (
            ctx.db.connect("features") as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute(f"select 1 from {table} limit 1")
