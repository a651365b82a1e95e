"""Signed anchors of the audit chain, kept outside the database.

The hash chain in `governance.audit_log` proves only that the rows agree with each other:
whoever owns the database can switch the append-only trigger off, delete the newest
records or edit one and recompute every later hash, and the chain is again consistent.
So the backend's audit writer periodically signs the chain's head (sequence number and
hash, plus the head of the change log) with an Ed25519 key that lives next to the KMS
master key in the stack home, never in the database, and appends the signed line to an
anchor log in the stack home. `verify` then checks the chain against every anchor: a
record the anchors vouched for that is gone (truncated tail) or has another hash
(rewritten) is named, whatever the database says about itself.

Who holds what: the database owner holds the owner password and nothing here; the
backend (root on the local stack) holds the signing key and appends anchors; the
auditor needs only the public key and a copy of the anchor log. Locally the log is a
0600 file in a 0700 directory; production writes the same lines to a WORM store (object
lock) or a transparency log, so that not even the backend's host can rewrite them.

What anchors cannot see: records appended after the latest anchor (at most
`ANCHOR_EVERY` records or `ANCHOR_SECONDS` seconds of them) can still be removed without
a trace; that window is the price of not signing every request."""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from backend.keys.files import write_once

# How often the audit writer anchors the chain, whichever comes first.
ANCHOR_EVERY = 100  # records
ANCHOR_SECONDS = 10.0

_VERSION = 1


@dataclass(frozen=True)
class AnchorFiles:
    """Where the anchor key and log live in a stack home."""

    key: Path  # the private signing key: the backend's only
    public: Path  # what an auditor needs to check the log
    logs: Path  # one anchor log per database

    @classmethod
    def in_home(cls, home: Path) -> AnchorFiles:
        # Beside the KMS master key: the same people may read it, the database never.
        return cls(home / "kms" / "audit-anchor.key", home / "audit" / "anchor.pub", home / "audit")

    def log_of(self, dbname: str) -> Path:
        return self.logs / f"{dbname}.anchors"


@dataclass(frozen=True)
class Anchor:
    db: str
    seq: int
    hash: str  # hex of the audit record's hash at `seq`
    changes: int  # the change log's highest id at that moment (0: empty)
    change_count: int  # how many entries it held up to that id
    at: str
    prev: str  # sha256 of the previous line of the anchor log ("" for the first)
    line_no: int = field(default=0, compare=False)

    def payload(self) -> bytes:
        body = {
            "v": _VERSION,
            "db": self.db,
            "seq": self.seq,
            "hash": self.hash,
            "changes": self.changes,
            "change_count": self.change_count,
            "at": self.at,
            "prev": self.prev,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def load_public_key(files: AnchorFiles) -> Ed25519PublicKey | None:
    try:
        raw = bytes.fromhex(files.public.read_text().strip())
    except FileNotFoundError:
        return None
    return Ed25519PublicKey.from_public_bytes(raw)


class AnchorSigner:
    """Signs chain heads and appends them to the database's anchor log."""

    def __init__(self, files: AnchorFiles, dbname: str) -> None:
        self.files = files
        self.dbname = dbname
        if not files.key.exists():
            write_once(files.key, secrets.token_bytes(32), 0o600)
        self._key = Ed25519PrivateKey.from_private_bytes(files.key.read_bytes())
        public = self._key.public_key().public_bytes_raw().hex()
        if not files.public.exists():
            write_once(files.public, (public + "\n").encode(), 0o644)

    def anchor(self, conn: psycopg.Connection) -> Anchor | None:
        """Sign the current head; None while the chain is empty."""
        row = conn.execute(
            "select a.seq, a.hash, c.max_id, c.n from governance.audit_log a,"
            " (select coalesce(max(id), 0) as max_id, count(*) as n from governance.change_log) c"
            " order by a.seq desc limit 1"
        ).fetchone()
        conn.rollback()
        if row is None:
            return None
        seq, head, changes, count = int(row[0]), bytes(row[1]).hex(), int(row[2]), int(row[3])
        log = self.files.log_of(self.dbname)
        log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(log, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            # Several backend workers share one log: one writer at a time, each line
            # linked to the one before it.
            fcntl.flock(fd, fcntl.LOCK_EX)
            prev = _last_line_digest(fd)
            at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
            anchor = Anchor(self.dbname, seq, head, changes, count, at, prev)
            payload = anchor.payload()
            sig = base64.b64encode(self._key.sign(payload)).decode()
            line = json.dumps({"anchor": json.loads(payload), "sig": sig}, sort_keys=True)
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return anchor


def _last_line_digest(fd: int) -> str:
    size = os.fstat(fd).st_size
    if size == 0:
        return ""
    start = max(0, size - 8192)
    tail = os.pread(fd, size - start, start).rstrip(b"\n")
    last = tail.rsplit(b"\n", 1)[-1]
    return hashlib.sha256(last).hexdigest()


@dataclass
class AnchorLog:
    anchors: list[Anchor]
    problems: list[str]


def read_log(files: AnchorFiles, dbname: str) -> AnchorLog | None:
    """Every anchor of the database whose signature verifies; a line that does not
    verify, or does not link to the line before it, is a problem. None if no log."""
    key = load_public_key(files)
    try:
        lines = files.log_of(dbname).read_bytes().splitlines()
    except FileNotFoundError:
        return None
    result = AnchorLog([], [])
    if key is None:
        result.problems.append(f"no public key at {files.public}: anchors cannot be checked")
        return result
    prev = ""
    for n, line in enumerate(lines, start=1):
        try:
            entry: dict[str, Any] = json.loads(line)
            body = entry["anchor"]
            anchor = Anchor(
                str(body["db"]),
                int(body["seq"]),
                str(body["hash"]),
                int(body["changes"]),
                int(body["change_count"]),
                str(body["at"]),
                str(body["prev"]),
                n,
            )
            key.verify(base64.b64decode(entry["sig"]), anchor.payload())
        except (ValueError, KeyError, TypeError, InvalidSignature):
            result.problems.append(f"anchor log line {n} is not a validly signed anchor")
            prev = hashlib.sha256(line).hexdigest()
            continue
        if anchor.prev != prev:
            result.problems.append(
                f"anchor log line {n} does not follow line {n - 1} (lines removed or reordered)"
            )
        if anchor.db == dbname:
            result.anchors.append(anchor)
        prev = hashlib.sha256(line).hexdigest()
    return result


@dataclass(frozen=True)
class Finding:
    kind: str  # edited | deleted | truncated | rewritten | change-log | protection | anchors
    seq: int | None
    text: str


def check_against_anchors(conn: psycopg.Connection, anchors: list[Anchor]) -> list[Finding]:
    """Each anchored record must still exist with the signed hash, and the change log
    must still hold every row it held when it was anchored."""
    if not anchors:
        return []
    findings: list[Finding] = []
    seqs = sorted({a.seq for a in anchors})
    rows: dict[int, bytes] = dict(
        conn.execute(
            "select seq, hash from governance.audit_log where seq = any(%s)", (seqs,)
        ).fetchall()
    )
    head_row = conn.execute("select coalesce(max(seq), 0) from governance.audit_log").fetchone()
    conn.rollback()
    head = int(head_row[0]) if head_row else 0
    last_good = 0
    for anchor in sorted(anchors, key=lambda a: (a.seq, a.line_no)):
        stored = rows.get(anchor.seq)
        if stored is None:
            if anchor.seq > head:
                findings.append(
                    Finding(
                        "truncated",
                        anchor.seq,
                        f"the chain ends at record {head} but record {anchor.seq} was signed"
                        f" at {anchor.at}: its tail was deleted",
                    )
                )
            else:
                findings.append(
                    Finding(
                        "deleted",
                        anchor.seq,
                        f"record {anchor.seq}, signed at {anchor.at}, is missing",
                    )
                )
            break
        if bytes(stored).hex() != anchor.hash:
            findings.append(
                Finding(
                    "rewritten",
                    anchor.seq,
                    f"record {anchor.seq} differs from the one signed at {anchor.at}: records"
                    f" {last_good + 1}..{anchor.seq} were rewritten (hashes recomputed)",
                )
            )
            break
        last_good = anchor.seq
    latest = max(anchors, key=lambda a: (a.changes, a.change_count))
    row = conn.execute(
        "select count(*) from governance.change_log where id <= %s", (latest.changes,)
    ).fetchone()
    conn.rollback()
    # Ids come from a sequence: a gap can be a rolled-back insert, and an entry below the
    # anchored id may commit after the anchor, so only fewer entries than signed is proof.
    if row is not None and int(row[0]) < latest.change_count:
        findings.append(
            Finding(
                "change-log",
                None,
                f"the change log held {latest.change_count} entries up to entry"
                f" {latest.changes} when signed at {latest.at}; it now holds {int(row[0])}:"
                " entries were deleted",
            )
        )
    return findings


@dataclass
class Report:
    """Everything `rejuve audit verify` checks, as findings of a kind an auditor can act on."""

    checked: int = 0
    anchors: int = 0
    latest: Anchor | None = None
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def verify_all(conn: psycopg.Connection, files: AnchorFiles, dbname: str) -> Report:
    """The chain in the database, then the chain against the signed anchors, then the
    triggers that protect the log and trace changes to the watched tables."""
    from backend.governance import audit, protections

    chain = audit.verify(conn)
    report = Report(checked=chain.checked)
    for seq, text in chain.problems:
        kind = "deleted" if "missing" in text or "link" in text else "edited"
        report.findings.append(Finding(kind, seq, text))
    log = read_log(files, dbname)
    if log is None:
        report.notes.append(
            f"no anchor log at {files.log_of(dbname)}: only the chain itself was checked"
        )
    else:
        report.anchors = len(log.anchors)
        report.latest = max(log.anchors, key=lambda a: a.seq, default=None)
        report.findings += [Finding("anchors", None, p) for p in log.problems]
        report.findings += check_against_anchors(conn, log.anchors)
        if report.latest is not None and chain.checked > report.latest.seq:
            report.notes.append(
                f"records {report.latest.seq + 1}..{chain.checked} are newer than the latest"
                " anchor (signed within seconds; until then only the chain vouches for them)"
            )
    report.findings += [Finding("protection", None, p) for p in protections.check(conn)]
    return report
