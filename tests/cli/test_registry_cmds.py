"""`rejuve members list` and `rejuve assignments add | list | revoke`, over the real stack.

A new coach can be given members from the host; every change is audited as the operator,
refused ones too."""

from __future__ import annotations

import getpass
import json
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

from backend.runtime import Runtime

REJUVE = str(Path(sys.executable).parent / "rejuve")


def _rejuve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([REJUVE, *args], capture_output=True, text=True, timeout=120)


def _ok(*args: str) -> str:
    res = _rejuve(*args)
    assert res.returncode == 0, res.stderr + res.stdout
    return res.stdout


def _audited(ctx: Runtime, member: uuid.UUID) -> list[tuple[object, ...]]:
    with ctx.db.connect("backend") as conn:
        return conn.execute(
            "select actor, role, action, resource, outcome, params->>'coach', params->'changed'"
            " from governance.audit_log where client = 'cli' and params->>'member' = %s"
            " order by seq",
            (str(member),),
        ).fetchall()


def test_members_list_shows_the_registry(ctx: Runtime) -> None:
    member = uuid.uuid4()
    hub_user = f"m{secrets.token_hex(4)}"
    _ok("members", "add", str(member), "--birth-year", "1980", "--sex", "female",
        "--hub-user", hub_user)  # fmt: skip
    every = _ok("members", "list", "--json", "--limit", "10000000")
    listed = {m["member_id"]: m for m in json.loads(every)}
    row = listed[str(member)]
    assert (row["hub_user"], row["birth_year"], row["sex"]) == (hub_user, 1980, "female")
    assert row["enrolled_at"]
    table = _ok("members", "list", "--limit", "10000000")
    assert str(member) in table and hub_user in table


def test_members_list_says_when_it_shows_only_some(ctx: Runtime) -> None:
    for _ in range(2):
        _ok("members", "add", str(uuid.uuid4()))
    res = _rejuve("members", "list", "--json", "--limit", "1")
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)) == 1  # stdout stays the JSON list
    assert "showing the first 1 of" in res.stderr and "--limit" in res.stderr


def test_assign_list_and_revoke_a_member_for_a_coach(ctx: Runtime) -> None:
    coach = f"coach{secrets.token_hex(4)}"
    member = uuid.uuid4()
    _ok("members", "add", str(member))

    assert "assigned:" in _ok("assignments", "add", coach, str(member))
    assert "no change" in _ok("assignments", "add", coach, str(member))
    listed = json.loads(_ok("assignments", "list", "--coach", coach, "--json"))
    assert [(a["coach"], a["member_id"], a["revoked_at"]) for a in listed] == [
        (coach, str(member), None)
    ]
    assert coach in _ok("assignments", "list")

    assert "revoked:" in _ok("assignments", "revoke", coach, str(member))
    assert json.loads(_ok("assignments", "list", "--coach", coach, "--json")) == []
    ended = json.loads(_ok("assignments", "list", "--coach", coach, "--include-revoked", "--json"))
    assert len(ended) == 1 and ended[0]["revoked_at"] is not None

    operator = f"operator:{getpass.getuser()}"
    assert _audited(ctx, member) == [
        (operator, "operator", "assignments.assign", "assignments", "allowed", coach, True),
        (operator, "operator", "assignments.assign", "assignments", "allowed", coach, False),
        (operator, "operator", "assignments.revoke", "assignments", "allowed", coach, True),
    ]


def test_an_unknown_member_is_refused_in_one_line_and_audited(ctx: Runtime) -> None:
    coach = f"coach{secrets.token_hex(4)}"
    stranger = uuid.uuid4()
    res = _rejuve("assignments", "add", coach, str(stranger))
    assert res.returncode == 2
    assert res.stderr.splitlines()[0] == f"error: no member {stranger} is enrolled"
    assert "Traceback" not in res.stderr
    operator = f"operator:{getpass.getuser()}"
    assert _audited(ctx, stranger) == [
        (operator, "operator", "assignments.assign", "assignments", "denied", coach, None)
    ]
    bad = _rejuve("assignments", "revoke", coach, "not-a-uuid")
    assert bad.returncode == 2 and "not a member id" in bad.stderr
