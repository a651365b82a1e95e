"""`rejuve members link | unlink | identify` and `rejuve ingest` of a FHIR bundle without
`--member`, and of bare Open mHealth bodies with `--schema`, over the real stack."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from backend.runtime import Runtime
from tests.cli_run import rejuve, rejuve_ok

FIXTURES = Path(__file__).parent.parent / "fixtures"
OMH_DATA = Path(__file__).parent.parent.parent / "backend/ingest/formats/omh_schemas/test-data/omh"


def test_link_identify_and_ingest_without_member(ctx: Runtime, tmp_path: Path) -> None:
    member = str(uuid.uuid4())
    rejuve_ok("members", "add", member)
    mrn = f"https://clinic.example/mrn|MRN-{uuid.uuid4().hex[:10]}"
    assert "1 new identifier(s)" in rejuve_ok("members", "link", member, "--identifier", mrn)

    found = json.loads(rejuve_ok("members", "identify", "--identifier", mrn, "--json"))
    assert found == [{"identifier": mrn, "member": member, "how": "cli"}]
    refused = rejuve("members", "link", str(uuid.uuid4()), "-i", mrn)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1

    # A bundle whose Patient carries that MRN goes to the member without --member.
    system, value = mrn.split("|")
    patient = str(uuid.uuid4())
    document = json.loads(
        (FIXTURES / "fhir/synthea-bundle.json")
        .read_text()
        .replace("5cbc121b-cd71-4428-b8b7-31e53eba8184", patient)
    )
    document["entry"][0]["resource"]["identifier"] = [{"system": system, "value": value}]
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(document))
    res = rejuve("ingest", str(bundle), "--format", "fhir")
    assert res.returncode == 0, res.stderr + res.stdout
    batch = res.stdout.split("landed as batch ")[1].split()[0]
    with ctx.db.connect("refiner") as conn:
        owner = conn.execute(
            "select member_id::text from raw.batches where batch_id = %s", (batch,)
        ).fetchone()
    assert owner == (member,)

    # Unknown Patient, no --member: refused in one line, nothing landed.
    document["entry"][0]["resource"]["identifier"] = [{"system": system, "value": "nobody"}]
    bundle.write_text(json.dumps(document).replace(patient, str(uuid.uuid4())))
    res = rejuve("ingest", str(bundle), "--format", "fhir")
    assert res.returncode == 2 and "not linked to any member" in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "nobody" not in res.stderr
    assert "landed" not in res.stdout

    assert "1 identifier(s) unlinked" in rejuve_ok("members", "unlink", member, "-i", mrn)
    with ctx.db.connect("backend") as conn:
        actions = conn.execute(
            "select action, outcome from governance.audit_log"
            " where client = 'cli' and params->>'member' = %s order by seq",
            (member,),
        ).fetchall()
    assert ("members.link", "allowed") in actions and ("members.unlink", "allowed") in actions
    audit_text = json.dumps(actions)
    assert value not in audit_text


def test_bare_omh_bodies_with_schema(tmp_path: Path) -> None:
    member = str(uuid.uuid4())
    body = OMH_DATA / "heart-rate/1.1/shouldPass"
    points = [json.loads(p.read_text()) for p in sorted(body.glob("*.json"))]
    timed = [p for p in points if "effective_time_frame" in p]
    path = tmp_path / "hr.json"
    path.write_text(json.dumps(timed))
    args = ("ingest", str(path), "-f", "omh", "--member", member, "--enrol")
    res = rejuve(*args, "--schema", "omh:heart-rate:1.1")
    assert res.returncode == 0, res.stderr + res.stdout
    assert "processed" in res.stdout
    refused = rejuve(*args)
    assert refused.returncode in (1, 2)
    assert "--schema" in refused.stderr + refused.stdout
    bad = rejuve(*args, "--schema", "heart-rate")
    assert bad.returncode == 2 and "omh:heart-rate:2.0" in bad.stderr
