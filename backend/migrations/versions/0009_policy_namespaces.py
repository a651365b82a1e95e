"""Policy subjects in two namespaces (`user:<name>`, `role:<role>`), and every policy change
announced to the backends (NOTIFY rejuve_policy) instead of waiting for their poll.

Before this, a rule's subject was a bare name that matched a user *or* a role of that
name: a Hub user called `auditor` got the auditor role's rules. Existing rules become
`role:` rules if they name a platform role (that is what the baseline meant) and `user:`
rules otherwise.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The platform roles as of this revision (a migration must not follow later code).
_ROLES = "'member', 'coach', 'researcher', 'steward', 'admin', 'auditor'"


def upgrade() -> None:
    op.execute(
        f"""
        UPDATE governance.casbin_rule
           SET v0 = CASE WHEN v0 IN ({_ROLES}) THEN 'role:' ELSE 'user:' END || v0
         WHERE ptype = 'p' AND v0 NOT LIKE 'user:%' AND v0 NOT LIKE 'role:%'
        """
    )
    # Backends seeding the baseline at the same moment could store a rule twice.
    op.execute(
        """
        DELETE FROM governance.casbin_rule a
         USING governance.casbin_rule b
         WHERE a.id > b.id AND a.ptype = b.ptype
           AND (a.v0, a.v1, a.v2, a.v3, a.v4, a.v5)
               IS NOT DISTINCT FROM (b.v0, b.v1, b.v2, b.v3, b.v4, b.v5)
        """
    )
    # Once per statement: a grant is one INSERT, a reload per changed row would be waste.
    op.execute(
        """
        CREATE FUNCTION governance.policy_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_notify('rejuve_policy', TG_OP);
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER casbin_rule_changed
        AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON governance.casbin_rule
        FOR EACH STATEMENT EXECUTE FUNCTION governance.policy_changed()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER casbin_rule_changed ON governance.casbin_rule")
    op.execute("DROP FUNCTION governance.policy_changed()")
    op.execute(
        """
        UPDATE governance.casbin_rule SET v0 = substr(v0, 6)
         WHERE ptype = 'p' AND (v0 LIKE 'user:%' OR v0 LIKE 'role:%')
        """
    )
