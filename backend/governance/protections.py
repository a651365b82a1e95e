"""The triggers that keep tables append-only or traced, and the check that they still do.

The database owner may disable a trigger or replace its function with one that lets
everything through, then switch it back. Verification therefore reads the catalog: each
protecting trigger must exist, be enabled, fire on the events it was made for, and call
a function whose source is the one the migrations wrote (a fingerprint pinned here; a
migration that changes one of these functions updates its fingerprint, and the test of a
freshly migrated database catches a forgotten one). A disable-edit-enable done between two
checks leaves the catalog as it was: for the audit log the signed anchors catch the edit
(audit_anchor.py); for the traced tables the change log does not see it, which is why
production adds pgaudit's DDL log, kept where the owner cannot reach it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class Guard:
    table: str
    trigger: str
    function: str  # regprocedure text
    events: str  # what it fires on, as pg_get_triggerdef says it


_REFUSE = "governance.refuse_change()"
_TRACE = "governance.log_change()"
GUARDS = (
    Guard("governance.audit_log", "audit_log_append_only", _REFUSE, "BEFORE DELETE OR UPDATE"),
    Guard("governance.audit_log", "audit_log_no_truncate", _REFUSE, "BEFORE TRUNCATE"),
    Guard("governance.consent_events", "consent_append_only", _REFUSE, "BEFORE DELETE OR UPDATE"),
    Guard("governance.consent_events", "consent_no_truncate", _REFUSE, "BEFORE TRUNCATE"),
    Guard("governance.change_log", "change_log_append_only", _REFUSE, "BEFORE DELETE OR UPDATE"),
    Guard("governance.change_log", "change_log_no_truncate", _REFUSE, "BEFORE TRUNCATE"),
    Guard("raw.records", "records_immutable", "raw.refuse_change()", "BEFORE DELETE OR UPDATE"),
    Guard("raw.records", "records_no_truncate", "raw.refuse_change()", "BEFORE TRUNCATE"),
    Guard("processed.observations", "observations_changes", _TRACE, "AFTER DELETE OR UPDATE"),
    Guard("processed.observations", "observations_truncate", _TRACE, "BEFORE TRUNCATE"),
    Guard(
        "governance.coach_assignments",
        "coach_assignments_changes",
        _TRACE,
        "AFTER DELETE OR UPDATE",
    ),
    Guard("governance.coach_assignments", "coach_assignments_truncate", _TRACE, "BEFORE TRUNCATE"),
    Guard(
        "governance.study_researchers",
        "study_researchers_changes",
        _TRACE,
        "AFTER DELETE OR UPDATE",
    ),
    Guard("governance.study_researchers", "study_researchers_truncate", _TRACE, "BEFORE TRUNCATE"),
)

# sha256 of each function's source with runs of white space made one space, and whether it
# runs as its owner (SECURITY DEFINER).
FINGERPRINTS: dict[str, str] = {
    "governance.refuse_change()": (
        "031b2e3d5d552ccce6a63ac40d6e046da7ab6a4df5eb92304f48bf0354fc614c"
    ),
    "raw.refuse_change()": "ffd066b8381ec605120b0bffa6e51d1d08627b82f4ce3c4abce26708e35ced93",
    "governance.log_change()": "500534a2a58dea98b36c1b8c5512d29a883e8af4601515d0610882b5814f994c",
    "governance.audit_append(uuid,text,text,text,text,text,text,jsonb,integer,text,integer,"
    "double precision,text)": "d48a2130e012cbf2885855d0bc5ac39df254abe3094c7bd021d04eaeeae7d8ac",
    "governance.audit_hash(bytea,bigint,timestamp with time zone,uuid,text,text,text,text,"
    "text,text,jsonb,integer,text,integer,double precision,text)": (
        "daf78c529b73415b1516b7f650f3212ca8b2429714d57f7edccea0751530a0b7"
    ),
}


def fingerprint(source: str, security_definer: bool) -> str:
    text = re.sub(r"\s+", " ", source).strip()
    return hashlib.sha256(f"{security_definer}:{text}".encode()).hexdigest()


_TRIGGERS = """
select c.oid::regclass::text, t.tgname, t.tgenabled, t.tgfoid::regprocedure::text,
       pg_get_triggerdef(t.oid)
  from pg_trigger t join pg_class c on c.oid = t.tgrelid
 where not t.tgisinternal and t.tgname = any(%s)
"""

_FUNCTIONS = """
select p.oid::regprocedure::text, p.prosrc, p.prosecdef
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
 where n.nspname in ('governance', 'raw')
"""


def check(conn: psycopg.Connection) -> list[str]:
    """What is no longer as the migrations left it, one line each."""
    problems: list[str] = []
    found: dict[tuple[str, str], tuple[str, str, str]] = {}
    disabled: list[str] = []
    for table, name, enabled, function, definition in conn.execute(
        _TRIGGERS, ([g.trigger for g in GUARDS],)
    ).fetchall():
        found[(table, name)] = (enabled, function, definition)
        # On a hypertable each chunk has its own copy of the trigger, each can be disabled.
        if enabled not in ("O", "A"):
            disabled.append(f"trigger {name} on {table} is disabled")
    functions = {
        name: fingerprint(source, secdef)
        for name, source, secdef in conn.execute(_FUNCTIONS).fetchall()
    }
    conn.rollback()
    for g in GUARDS:
        here = found.get((g.table, g.trigger))
        if here is None:
            problems.append(f"trigger {g.trigger} on {g.table} is missing (dropped)")
            continue
        _, function, definition = here
        if function != g.function:
            problems.append(f"trigger {g.trigger} on {g.table} calls {function}, not {g.function}")
        if f" {g.events} ON " not in str(definition):
            problems.append(f"trigger {g.trigger} on {g.table} no longer fires {g.events}")
    problems += sorted(disabled)
    for name, expected in FINGERPRINTS.items():
        actual = functions.get(name)
        if actual is None:
            problems.append(f"function {name} is missing")
        elif actual != expected:
            problems.append(f"function {name} was replaced (its source is not the migrations')")
    return problems
