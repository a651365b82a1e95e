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
    )
    assert res.returncode == 0, res.stderr
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

    listed = rejuve("quarantine", "list", "--batch", batch, "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert len(entries) == t["quarantined"]
    assert all(e["reason"] and e["locator"].startswith("export.xml line ") for e in entries)

    shown = rejuve("quarantine", "show", entries[0]["quarantine_id"])
    assert shown.returncode == 0 and entries[0]["reason"] in shown.stdout

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
    res = rejuve("ingest", str(broken), "--format", "apple-health", "--member", str(uuid.uuid4()))
    assert res.returncode == 2
    first = res.stderr.strip().splitlines()[0]
    assert first.startswith("error: truncated.xml")
    assert "line" in first
    missing = rejuve(
        "ingest", str(tmp_path / "nope.json"), "-f", "omh", "--member", str(uuid.uuid4())
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr
    wrong_format = rejuve("ingest", str(broken), "-f", "pdf", "--member", str(uuid.uuid4()))
    assert wrong_format.returncode == 2 and "unknown format 'pdf'" in wrong_format.stderr


def test_audit_verify_reports_the_chain() -> None:
    res = rejuve("audit", "verify", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] is True and report["problems"] == []
