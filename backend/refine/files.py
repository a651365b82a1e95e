"""Ingesting one file: land it (encrypted, in parts), refine it, report what became of it.

Used alike by `rejuve ingest`, the Prefect flows and the drop-folder watcher."""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from backend.db.access import DatabaseAccess
from backend.exceptions import UserError
from backend.ingest.formats.registry import get as get_format
from backend.ingest.landing import NotEnrolled, Receipt, check_enrolled, is_enrolled, land
from backend.keys.keystore import KeyStore
from backend.refine.reconcile import BatchLine, reconcile
from backend.refine.refiner import refine_batch


@dataclass(frozen=True)
class FileResult:
    receipt: Receipt
    line: BatchLine


def ingest_file(
    db: DatabaseAccess,
    keys: KeyStore,
    *,
    path: Path,
    fmt: str,
    member_id: uuid.UUID | None,
    region: str,
    source: str | None = None,
    client_batch_id: str | None = None,
    parse_options: Mapping[str, Any] | None = None,
    timeout: float = 600,
    progress: Callable[[int], None] = lambda _: None,
    enrol: bool = False,
) -> FileResult:
    """`enrol`: enrol the member first if it is not enrolled (an explicit first ingest);
    otherwise a member id that is not enrolled is refused (NotEnrolled) before anything
    lands. A FHIR file's Patient is resolved to its member first (`member_id` may then be
    None; see `identifiers.resolve_bundle`)."""
    get_format(fmt)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if enrol and member_id is not None:
        enrol_members(db, [member_id], region)
    if fmt == "fhir":
        member_id = _fhir_member(db, path, member_id)
    if member_id is None:
        raise UserError(f"--member is needed for {fmt} files")
    with path.open("rb") as fh, db.connect("ingest") as conn:
        receipt = land(
            conn,
            keys,
            source=source or f"file:{fmt}",
            fmt=fmt,
            member_id=member_id,
            region=region,
            data=fh,
            file_name=path.name,
            client_batch_id=client_batch_id,
            parse_options=parse_options,
            progress=progress,
        )
    return _refine_and_report(db, keys, receipt, timeout)


def _fhir_member(db: DatabaseAccess, path: Path, member: uuid.UUID | None) -> uuid.UUID:
    """The door rule for a FHIR file (`identifiers.resolve_bundle`); a file that is not
    FHIR JSON lands anyway and its batch says why it could not be read."""
    from backend.identity.identifiers import resolve_bundle
    from backend.ingest.formats.fhir import bundle_patients
    from backend.ingest.model import FormatError

    try:
        with path.open("rb") as fh:
            patients = bundle_patients(fh, path.name)
    except FormatError:
        patients = []
    if member is not None:
        with db.connect("ingest") as conn:
            check_enrolled(conn, member)
    with db.connect("backend") as conn:
        return resolve_bundle(conn, patients, member)


def ingest_multi_member_csv(
    db: DatabaseAccess,
    keys: KeyStore,
    *,
    path: Path,
    region: str,
    source: str | None = None,
    parse_options: Mapping[str, Any] | None = None,
    timeout: float = 600,
    enrol: bool = False,
) -> list[FileResult]:
    """A lab file with many members' rows: one batch per member (see `split`). Every
    member must be enrolled (or `enrol`) before any of it lands."""
    from backend.ingest.split import split_csv

    parts = split_csv(path, parse_options)
    if enrol:
        enrol_members(db, list(parts), region)
    with db.connect("ingest") as conn:
        missing = [m for m in parts if not is_enrolled(conn, m)]
        conn.rollback()
    if missing:
        raise NotEnrolled(
            f"{len(missing)} of the file's {len(parts)} members are not enrolled"
            f" (first: {missing[0]}); nothing was landed",
            "enrol them (`rejuve members add`), or pass --enrol",
            field="member",
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    results = []
    for member, body in parts.items():
        with db.connect("ingest") as conn:
            receipt = land(
                conn,
                keys,
                source=source or "file:csv-lab",
                fmt="csv-lab",
                member_id=member,
                region=region,
                data=io.BytesIO(body),
                file_name=path.name,
                parse_options=parse_options,
                # the same file sent again lands nothing new
                client_batch_id=f"{path.name}:{digest}:{member}",
            )
        results.append(_refine_and_report(db, keys, receipt, timeout))
    return results


def enrol_members(db: DatabaseAccess, members: Sequence[uuid.UUID], region: str) -> int:
    """Enrol the members not enrolled yet (home region `region`); returns how many."""
    from backend.governance.members import Enrolment, enrol

    added = 0
    with db.connect("backend") as conn:
        for m in members:
            if not is_enrolled(conn, m):
                conn.rollback()
                added += enrol(conn, Enrolment(m, region))
        conn.rollback()
    return added


def _refine_and_report(
    db: DatabaseAccess, keys: KeyStore, receipt: Receipt, timeout: float
) -> FileResult:
    with db.connect("refiner") as conn:
        # The refiner service may take the batch first; either way it is refined once.
        refine_batch(conn, keys, receipt.batch_id)
        wait_refined(conn, [receipt.batch_id], timeout)
        line = reconcile(conn, batch=receipt.batch_id).batches[0]
    return FileResult(receipt, line)


def wait_refined(
    conn: psycopg.Connection, batch_ids: Sequence[uuid.UUID | str], timeout: float
) -> None:
    """Return once every batch has its ledger row (the refiner service, a flow or this
    process refined it); UserError after `timeout` seconds."""
    wanted = {str(b) for b in batch_ids}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "select count(*) from processed.batch_ledger where batch_id = any(%s::uuid[])",
            (list(wanted),),
        ).fetchone()
        conn.rollback()
        if row and row[0] >= len(wanted):
            return
        time.sleep(0.2)
    raise UserError(
        f"{len(wanted)} batch(es) not refined within {timeout:.0f} s",
        "is the refiner running? see `rejuve status`",
    )
