"""The steward's commands as people run them: `rejuve ingest | reconcile | quarantine |
quality` against the running stack."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
REJUVE = [sys.executable, "-m", "backend.cli.main"]


def rejuve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*REJUVE, *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_ingest_then_reconcile_quarantine_and_quality() -> None:
    member = str(uuid.uuid4())
    res = rejuve(
        "ingest",
        str(FIXTURES / "apple_health/export.xml"),
        "--format",
        "apple-health",
        "--member",
        member,
        "--enrol",
    )
    # Landed, but some records were quarantined: exit 1, and the summary counts each reason.
    assert res.returncode == 1, res.stderr
    assert "did not go in cleanly" in res.stderr
    assert "quarantined: " in res.stdout
    assert "landed as batch" in res.stdout
    batch = res.stdout.split("landed as batch ")[1].split()[0]
    assert "HKQuantityTypeIdentifierDietaryWater" in res.stdout  # unmapped types are reported

    rec = rejuve("reconcile", "--batch", batch, "--json")
    assert rec.returncode == 0, rec.stderr
    report = json.loads(rec.stdout)
    assert report["ok"] is True
    t = report["totals"]
    assert t["parsed"] == t["processed"] + t["quarantined"] + t["duplicate"] > 0
    assert t["unmapped"]["HKQuantityTypeIdentifierDietaryWater"] == 2

    listed = rejuve("quarantine", "list", "--batch", batch[:8], "--json")  # as tables show it
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert len(entries) == t["quarantined"]
    assert all(e["reason"] and e["locator"].startswith("export.xml line ") for e in entries)

    shown = rejuve("quarantine", "show", entries[0]["quarantine_id"])
    assert shown.returncode == 0 and entries[0]["reason"] in shown.stdout
    # any unique prefix of an id will do, as a table shows it
    by_prefix = rejuve("quarantine", "show", entries[0]["quarantine_id"][:13])
    assert by_prefix.returncode == 0 and entries[0]["quarantine_id"] in by_prefix.stdout
    listed_table = rejuve("quarantine", "list", "--batch", batch)
    assert entries[0]["quarantine_id"] in listed_table.stdout  # whole ids, never cut

    rejected = rejuve("quarantine", "reject", entries[0]["quarantine_id"], "--note", "test")
    assert rejected.returncode == 0
    again = rejuve("quarantine", "reject", entries[0]["quarantine_id"])
    assert again.returncode == 2
    assert "already rejected" in again.stderr

    quality = rejuve("quality", "--json", "--limit", "200")
    assert quality.returncode == 0
    assert batch in [q["batch_id"] for q in json.loads(quality.stdout)]


def test_a_bad_file_is_one_clear_line(tmp_path: Path) -> None:
    broken = tmp_path / "truncated.xml"
    text = (FIXTURES / "apple_health/export.xml").read_text()
    broken.write_text(text[: len(text) // 2])
    res = rejuve(
        "ingest", str(broken), "--format", "apple-health", "--member", str(uuid.uuid4()), "--enrol"
    )
    assert res.returncode == 2
    first = res.stderr.strip().splitlines()[0]
    assert first.startswith("error: truncated.xml")
    assert "line" in first
    # reconcile says the batch failed, and exits 1
    batch = res.stdout.split("landed as batch ")[1].split()[0]
    rec = rejuve("reconcile", "--batch", batch)
    assert rec.returncode == 1
    assert "failed" in rec.stdout and "nothing lost" not in rec.stdout
    quality = json.loads(rejuve("quality", "--json", "--limit", "500").stdout)
    mine = [q for q in quality if q["batch_id"] == batch]
    assert mine and mine[0]["error"] and mine[0]["completeness"] is None
    missing = rejuve(
        "ingest", str(tmp_path / "nope.json"), "-f", "omh", "--member", str(uuid.uuid4())
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr
    wrong_format = rejuve("ingest", str(broken), "-f", "pdf", "--member", str(uuid.uuid4()))
    assert wrong_format.returncode == 2 and "unknown format 'pdf'" in wrong_format.stderr


def test_a_member_that_is_not_enrolled_is_refused_in_one_line() -> None:
    stranger = str(uuid.uuid4())
    res = rejuve(
        "ingest", str(FIXTURES / "omh/single-point.json"), "-f", "omh", "--member", stranger
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("error: --member: ") and "not enrolled" in lines[0]
    assert "--enrol" in lines[0]
    assert "landed" not in res.stdout


def test_a_lab_file_naming_other_members_does_not_go_in_cleanly(tmp_path: Path) -> None:
    """174 of 183 rows quarantined as member_mismatch used to be reported "ok", exit 0.
    Ingesting it again opens no second quarantine entry for the same record."""
    member, other = str(uuid.uuid4()), str(uuid.uuid4())
    lab = tmp_path / "labs.csv"
    lab.write_text(
        "member_id,loinc,value,unit,effective_at\n"
        f"{member},4548-4,6.1,%,2026-03-02T08:10:00+01:00\n"
        f"{other},4548-4,6.2,%,2026-03-03T08:10:00+01:00\n"
        f"{other},4548-4,6.3,%,2026-03-04T08:10:00+01:00\n"
    )
    args = ("ingest", str(lab), "-f", "csv-lab", "--member", member, "--enrol")
    res = rejuve(*args)
    assert res.returncode == 1, res.stderr
    assert "member_mismatch 2" in res.stdout
    assert "2 record(s) quarantined, 1 processed" in res.stderr
    batch = res.stdout.split("landed as batch ")[1].split()[0]
    entries = json.loads(rejuve("quarantine", "list", "--batch", batch, "--json").stdout)
    assert sorted(e["record"]["member_ref"] for e in entries) == [other, other]

    again = rejuve(*args, "--batch-id", "second-copy-" + member)
    assert again.returncode == 0, again.stderr  # nothing new: all duplicates
    batch2 = again.stdout.split("landed as batch ")[1].split()[0]
    rec = json.loads(rejuve("reconcile", "--batch", batch2, "--json").stdout)
    assert rec["totals"]["quarantined"] == 0 and rec["totals"]["duplicate"] == 3
    open_entries = json.loads(
        rejuve(
            "quarantine", "list", "--reason", "member_mismatch", "--json", "--limit", "10000"
        ).stdout
    )
    assert sum(e["record"].get("member_ref") == other for e in open_entries) == 2


def test_sources_are_enrolled_for_members() -> None:
    name = "cli-src-" + uuid.uuid4().hex[:8]
    stranger = str(uuid.uuid4())
    refused = rejuve("sources", "add", name, "--member", stranger)
    assert refused.returncode == 2 and "not an enrolled member" in refused.stderr


def test_audit_verify_reports_the_chain() -> None:
    res = rejuve("audit", "verify", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] is True and report["problems"] == []
