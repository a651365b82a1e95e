"""The study registry over HTTP (admins staff and close studies; researchers list their
own and lose access when taken off) and from the CLI (audited as the operator)."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

from backend.stack.context import StackContext
from tests.hub_people import Backend, hub_people
from workbench import connect

REJUVE = [sys.executable, "-m", "backend.cli.main"]
T0 = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
RANGE = {"start": T0.isoformat(), "end": (T0 + dt.timedelta(days=1)).isoformat()}


@pytest.fixture(scope="module")
def people(ctx: StackContext) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    with hub_people(ctx, {"ada": "admin", "rex": "researcher", "ria": "researcher"}) as p:
        yield p


def test_admin_staffs_a_study_and_the_researcher_follows(
    ctx: StackContext, people: tuple[dict[str, str], dict[str, str]]
) -> None:
    names, tokens = people
    study, elsewhere = f"st-{secrets.token_hex(3)}", f"st-{secrets.token_hex(3)}"
    api = Backend(ctx)
    try:
        for s in (study, elsewhere):
            made = api.call("POST", "/v1/studies", tokens["ada"], json={"study_id": s, "title": s})
            assert made.status_code == 201, made.text
        again = api.call(
            "POST", "/v1/studies", tokens["ada"], json={"study_id": study, "title": "x"}
        )
        assert (again.status_code, again.json()["changed"]) == (200, False)
        for s, who in ((study, "rex"), (elsewhere, "ria")):
            added = api.call(
                "POST",
                f"/v1/studies/{s}/researchers",
                tokens["ada"],
                json={"researcher": names[who]},
            )
            assert added.status_code == 201, added.text
        nowhere = api.call(
            "POST",
            "/v1/studies/no-such-study/researchers",
            tokens["ada"],
            json={"researcher": names["rex"]},
        )
        assert nowhere.status_code == 404
        # A name nobody holds (or a non-researcher) is refused: the membership would pass
        # to whoever is given that name next.
        for who in (f"ghost-{secrets.token_hex(3)}", names["ada"]):
            refused = api.call(
                "POST", f"/v1/studies/{study}/researchers", tokens["ada"], json={"researcher": who}
            )
            assert refused.status_code == 422, refused.text
            assert "no account with the researcher role" in refused.text

        # A researcher sees their own study, with the workbench, and nobody else's.
        wb = connect(ctx.backend_url, tokens["rex"], str(ctx.layout.ca_cert))
        try:
            mine = wb.studies()
        finally:
            wb.close()
        assert list(mine["study_id"]) == [study]
        assert list(mine.loc[0, "researchers"]) == [names["rex"]]
        everything = api.call("GET", "/v1/studies", tokens["ada"]).json()
        assert {study, elsewhere} <= {s["study_id"] for s in everything}

        # New studies are aggregate-only until an admin allows row-level data.
        assert (
            api.call("GET", f"/v1/studies/{study}/dataset", tokens["rex"], params=RANGE).status_code
            == 403
        )
        level = api.call(
            "PUT", f"/v1/studies/{study}/access-level", tokens["ada"], json={"level": "row-level"}
        )
        assert (level.status_code, level.json()["changed"]) == (200, True)
        assert (
            api.call("GET", f"/v1/studies/{study}/dataset", tokens["rex"], params=RANGE).status_code
            == 200
        )
        off = api.call(
            "POST",
            f"/v1/studies/{study}/researchers/revoke",
            tokens["ada"],
            json={"researcher": names["rex"]},
        )
        assert (off.status_code, off.json()["changed"]) == (200, True)
        assert (
            api.call("GET", f"/v1/studies/{study}/dataset", tokens["rex"], params=RANGE).status_code
            == 404
        )

        closed = api.call("POST", f"/v1/studies/{elsewhere}/close", tokens["ada"])
        assert (closed.status_code, closed.json()["changed"]) == (200, True)
        assert (
            api.call(
                "GET", f"/v1/studies/{elsewhere}/dataset", tokens["ria"], params=RANGE
            ).status_code
            == 404
        )
    finally:
        api.close()


def _rejuve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*REJUVE, *args], capture_output=True, text=True, timeout=120)


def test_the_operator_manages_studies_from_the_cli(ctx: StackContext) -> None:
    study = f"cli-{secrets.token_hex(3)}"
    roles = {"r1": "researcher", "r2": "researcher", "r3": "researcher"}
    with hub_people(ctx, roles) as (names, _):
        r1, r2, r3 = names["r1"], names["r2"], names["r3"]
        made = _rejuve("studies", "add", study, "--title", "Sleep and HRV", "--researcher", r1)
        staffed = _rejuve("studies", "researchers", study, r2, r3)
        unstaffed = _rejuve("studies", "researchers", study, r3, "--remove")
    listed = _rejuve("studies", "list", "--json")
    closed = _rejuve("studies", "close", study)
    missing = _rejuve("studies", "close", "no-such-study")
    for done in (made, staffed, unstaffed, listed, closed):
        assert done.returncode == 0, done.stderr
    entry = next(s for s in json.loads(listed.stdout) if s["study_id"] == study)
    assert (entry["title"], entry["researchers"]) == ("Sleep and HRV", sorted([r1, r2]))
    assert missing.returncode == 2 and "no study no-such-study" in missing.stderr
    with ctx.db.connect("backend") as conn:
        rows = conn.execute(
            "select action, outcome, role from governance.audit_log"
            " where client = 'cli' and (params->>'study_id' = %s or resource like %s)"
            " order by seq",
            (study, f"studies/{study}/%"),
        ).fetchall()
    assert rows == [
        ("studies.create", "allowed", "operator"),
        ("studies.researchers.add", "allowed", "operator"),
        ("studies.researchers.remove", "allowed", "operator"),
        ("studies.close", "allowed", "operator"),
    ]


def test_a_researcher_with_no_account_is_refused(ctx: StackContext) -> None:
    """A membership for a name nobody holds would go to whoever is next given the name."""
    study = f"cli-{secrets.token_hex(3)}"
    assert _rejuve("studies", "add", study, "--title", "t").returncode == 0
    ghost = f"ghost-{secrets.token_hex(3)}"
    refused = _rejuve("studies", "researchers", study, ghost)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[0] == (
        f"error: refused: {ghost} has no account with the researcher role"
        f" (create it first: rejuve users add {ghost} --role researcher)"
    )
    with ctx.db.connect("backend") as conn:
        row = conn.execute(
            "select count(*) from governance.study_researchers where study_id = %s", (study,)
        ).fetchone()
    assert row == (0,)
