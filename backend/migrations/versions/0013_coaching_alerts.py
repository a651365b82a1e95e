"""Coaching alerts: what the `detect-alerts` flow found in the analytics zone, with the rule
(id and version) that fired and the observations behind it, and what a coach did with it.

- `analytics.alerts`: one row per member x rule x rule version x metric x day (the
  detector inserts with ON CONFLICT DO NOTHING, so a re-run adds nothing; the metric is
  the rule's own, or the lab code for lab rules). `evidence` is the list of
  observations (code, time, value, unit) the rule looked at; `baseline` the member's own
  median/MAD when the rule is personal. Written by the detector (the refiner role, which
  owns the analytics zone); only the backend changes `status`, and only those columns.
- `analytics.alert_events`: every acknowledge/dismiss, append-only (the audit trail has
  the request; this has the alert's own history for the coach's page).

The backend's readers see both through the analytics zone's default privileges (0001).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27
"""

from alembic import op

from backend.migrations.roles import current_roles, q

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    r = current_roles()
    refiner, backend = q(r.refiner), q(r.backend)
    op.execute(
        """
        CREATE TABLE analytics.alerts (
            alert_id     uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
            member_id    uuid        NOT NULL,
            rule_id      text        NOT NULL,
            rule_version integer     NOT NULL,
            kind         text        NOT NULL CHECK (kind IN ('generic', 'personal')),
            metric       text        NOT NULL,
            day          date        NOT NULL,
            value        double precision NOT NULL,
            threshold    text        NOT NULL,
            explanation  text        NOT NULL,
            evidence     jsonb       NOT NULL,
            baseline     jsonb,
            fired_at     timestamptz NOT NULL DEFAULT now(),
            status       text        NOT NULL DEFAULT 'open'
                         CHECK (status IN ('open', 'acknowledged', 'dismissed')),
            status_note  text,
            status_by    text,
            status_at    timestamptz,
            UNIQUE (member_id, rule_id, rule_version, metric, day)
        )
        """
    )
    # The triage list counts open alerts of many members at once.
    op.execute("CREATE INDEX alerts_member_status_idx ON analytics.alerts (member_id, status)")
    op.execute(
        """
        CREATE TABLE analytics.alert_events (
            id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            alert_id  uuid        NOT NULL REFERENCES analytics.alerts ON DELETE CASCADE,
            action    text        NOT NULL CHECK (action IN ('acknowledge', 'dismiss')),
            note      text,
            actor     text        NOT NULL,
            at        timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX alert_events_alert_idx ON analytics.alert_events (alert_id)")
    op.execute(f"GRANT SELECT, INSERT ON analytics.alerts TO {refiner}")
    op.execute(
        f"GRANT SELECT, UPDATE (status, status_note, status_by, status_at)"
        f" ON analytics.alerts TO {backend}"
    )
    op.execute(f"GRANT SELECT, INSERT ON analytics.alert_events TO {backend}")


def downgrade() -> None:
    op.execute("DROP TABLE analytics.alert_events")
    op.execute("DROP TABLE analytics.alerts")
