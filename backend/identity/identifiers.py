"""A member's identifiers at sources (system + value, as FHIR `Patient.identifier`), and
the door rule that resolves a FHIR bundle's Patient to the enrolled member.

An identifier belongs to at most one member (unique per system). The values are personal
data: they live in `governance.member_identifiers` (migration 0015), are shown to the
operator who asks, and never go into a log line or an error message (errors name the
identifier's system only)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import errors

from backend.exceptions import Conflict, NotFound, UserError
from backend.ingest.formats.fhir import BundlePatient


@dataclass(frozen=True)
class Identifier:
    system: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Identifier:
        """`system|value`, the FHIR token form (`http://hospital.example.org|MRN-123`)."""
        system, sep, value = text.partition("|")
        if not sep or not system.strip() or not value.strip():
            raise UserError(
                f"an identifier is SYSTEM|VALUE, e.g. https://hospital.example|12345; got {text!r}"
            )
        return cls(system.strip(), value.strip())

    def __str__(self) -> str:
        return f"{self.system}|{self.value}"


@dataclass(frozen=True)
class Link:
    identifier: Identifier
    member_id: uuid.UUID
    how: str


def find(conn: psycopg.Connection, identifiers: Iterable[Identifier]) -> dict[Identifier, Link]:
    """The link of each known identifier (unknown ones are left out)."""
    wanted = list(identifiers)
    if not wanted:
        return {}
    rows = conn.execute(
        "select i.system, i.value, i.member_id, i.how from governance.member_identifiers i"
        " join unnest(%s::text[], %s::text[]) as w(system, value)"
        "   on w.system = i.system and w.value = i.value",
        ([w.system for w in wanted], [w.value for w in wanted]),
    ).fetchall()
    return {Identifier(s, v): Link(Identifier(s, v), m, h) for s, v, m, h in rows}


def owners(
    conn: psycopg.Connection, identifiers: Iterable[Identifier]
) -> dict[Identifier, uuid.UUID]:
    """The member each known identifier belongs to (unknown ones are left out)."""
    return {i: found.member_id for i, found in find(conn, identifiers).items()}


def of_member(conn: psycopg.Connection, member: uuid.UUID) -> list[Link]:
    rows = conn.execute(
        "select system, value, how from governance.member_identifiers where member_id = %s"
        " order by system, value",
        (member,),
    ).fetchall()
    return [Link(Identifier(s, v), member, h) for s, v, h in rows]


def link(
    conn: psycopg.Connection, member: uuid.UUID, identifiers: Sequence[Identifier], how: str = "cli"
) -> int:
    """Give `member` these identifiers (in one transaction: all or none). An identifier
    another member holds is refused (Conflict); one the member holds already is kept.
    Returns how many were new."""
    with conn.transaction():
        if (
            conn.execute(
                "select 1 from governance.members where member_id = %s", (member,)
            ).fetchone()
            is None
        ):
            raise NotFound(f"member {member} is not enrolled")
        held = owners(conn, identifiers)
        taken = sorted({i.system for i, m in held.items() if m != member})
        if taken:
            raise Conflict(
                f"an identifier of system {taken[0]} already belongs to another member;"
                " unlink it there first (`rejuve members unlink`)"
            )
        new = [i for i in dict.fromkeys(identifiers) if i not in held]
        try:
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into governance.member_identifiers (system, value, member_id, how)"
                    " values (%s, %s, %s, %s)",
                    [(i.system, i.value, member, how) for i in new],
                )
        except errors.UniqueViolation:
            raise Conflict("the same identifier was linked at the same time elsewhere") from None
    return len(new)


def unlink(conn: psycopg.Connection, member: uuid.UUID, identifiers: Sequence[Identifier]) -> int:
    with conn.transaction():
        removed = 0
        for i in identifiers:
            removed += conn.execute(
                "delete from governance.member_identifiers"
                " where system = %s and value = %s and member_id = %s",
                (i.system, i.value, member),
            ).rowcount
    return removed


# --- the door rule for a FHIR file -------------------------------------------------------


def _identifiers(patient: BundlePatient) -> list[Identifier]:
    return [Identifier(s, v) for s, v in patient.identifiers]


def _enrolled_ids(conn: psycopg.Connection, patient: BundlePatient) -> set[uuid.UUID]:
    """Platform member ids the Patient's own id or fullUrl is (a bundle this platform
    made, or one a source built with the member id it was given)."""
    ids = set()
    for ref in patient.refs:
        try:
            ids.add(uuid.UUID(ref.rsplit("/", 1)[-1].removeprefix("urn:uuid:")))
        except ValueError:
            continue
    if not ids:
        return set()
    rows = conn.execute(
        "select member_id from governance.members where member_id = any(%s)", (list(ids),)
    ).fetchall()
    return {r[0] for r in rows}


def resolve_bundle(
    conn: psycopg.Connection, patients: Sequence[BundlePatient], member: uuid.UUID | None
) -> uuid.UUID:
    """The member a FHIR file belongs to, decided before anything lands:

    - no Patient in it (a single Observation, a lab searchset): `member` (required);
    - one Patient that is a known member (its identifiers are linked to them, or its id
      is their platform member id): that member; `--member` naming someone else is
      refused; identifiers of the Patient not linked yet are linked to them;
    - one Patient nobody is known as: with `member`, its identifiers are linked to that
      member now (recorded as `how = 'ingest'`) and the file lands for them; without,
      refused;
    - several Patients: refused (one member per batch: ingest one patient at a time).

    Refusals raise UserError with one line naming the problem, never an identifier's
    value (the line may end up in a terminal log)."""
    if not patients:
        if member is None:
            raise UserError("--member is needed: the file has no Patient to resolve a member from")
        return member
    if len(patients) > 1:
        raise UserError(
            f"the bundle holds {len(patients)} Patients; the platform takes one patient's"
            " bundle at a time"
        )
    wanted = _identifiers(patients[0])
    held = owners(conn, wanted)
    known = set(held.values()) | _enrolled_ids(conn, patients[0])
    conn.rollback()
    if len(known) > 1:
        raise UserError(
            "the bundle's Patient is known as more than one member (its identifiers or id);"
            " fix the links (`rejuve members identify`) before ingesting"
        )
    if known:
        (owner,) = known
        if member is not None and member != owner:
            raise UserError(
                "the bundle's Patient is another member (by its identifiers or id), not"
                " --member; check the file or the links (`rejuve members identify`)"
            )
    elif member is None:
        systems = ", ".join(sorted({i.system for i in wanted})) or "none"
        raise UserError(
            f"the bundle's Patient is not linked to any member (identifier systems: {systems});"
            " pass --member to link it, or `rejuve members link` first"
        )
    else:
        owner = member
    if set(wanted) - set(held):
        link(conn, owner, wanted, how="ingest")
    return owner
