"""What a person held ends when their account does.

Rights are keyed by the Hub user name: coach assignments, study memberships, a member's
link to their own record, and personal policy rules. Names are reused (an identity
provider may give a departed person's name to someone new; an operator re-creates an
account), so removing an account must take away everything held under its name, or the
next holder of the name inherits it. Each revocation keeps its history: assignments are
stamped revoked, memberships and links are written to the change log (migration 0008),
and the operator's removal is one audit record listing what was revoked."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import psycopg

from backend.governance.policy import ROLES, Policy


@dataclass
class Revoked:
    assignments: list[uuid.UUID] = field(default_factory=list)  # members they coached
    studies: list[str] = field(default_factory=list)
    member_links: list[uuid.UUID] = field(default_factory=list)  # their own member record
    rules: list[list[str]] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """For the audit record: counts and study ids, no member ids."""
        return {
            "assignments": len(self.assignments),
            "studies": sorted(self.studies),
            "member_links": len(self.member_links),
            "rules": [" ".join(r) for r in self.rules],
        }


def personal_subjects(name: str) -> tuple[str, ...]:
    """The policy subjects that mean this user: `user:<name>`, and the bare name from
    before users and roles had their own namespaces, unless the bare name is a role
    (a user called `auditor` must not take the auditor role's rules with them)."""
    return (f"user:{name}",) if name in ROLES else (f"user:{name}", name)


def revoke_rights(conn: psycopg.Connection, name: str) -> Revoked:
    """Revoke what the database holds under `name`, in one transaction."""
    done = Revoked()
    with conn.transaction():
        done.assignments = [
            r[0]
            for r in conn.execute(
                "update governance.coach_assignments set revoked_at = now()"
                " where coach = %s and revoked_at is null returning member_id",
                (name,),
            ).fetchall()
        ]
        done.studies = [
            r[0]
            for r in conn.execute(
                "delete from governance.study_researchers where researcher = %s returning study_id",
                (name,),
            ).fetchall()
        ]
        done.member_links = [
            r[0]
            for r in conn.execute(
                "update governance.members set hub_user = null where hub_user = %s"
                " returning member_id",
                (name,),
            ).fetchall()
        ]
    return done


def revoke_rules(policy: Policy, name: str) -> list[list[str]]:
    """Remove every rule whose subject is this user (and their role assignments, if the
    policy holds any); returns the removed rules."""
    policy.reload()
    subjects = set(personal_subjects(name))
    removed = [r for r in policy.rules() if r and r[0] in subjects]
    for rule in removed:
        policy.revoke(*rule[:4])
    grouping = [r for r in policy.enforcer.get_grouping_policy() if r and r[0] in subjects]
    for g in grouping:
        policy.enforcer.remove_grouping_policy(*g)
    return removed + [["g", *g] for g in grouping]
