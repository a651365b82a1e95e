"""Dead-lettered batches can be put back in the refiner's queue (`rejuve batches retry`):
their failed attempts are counted afresh from 0.

The attempts row stays (with 0 attempts) while the batch waits: it is how the refiner
finds a batch older than its look-back window (`pending`), which a dead letter put back
after a week would be.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE processed.batch_attempts DROP CONSTRAINT batch_attempts_attempts_check,"
        " ADD CONSTRAINT batch_attempts_attempts_check CHECK (attempts >= 0)"
    )


def downgrade() -> None:
    # A batch put back and not tried yet stays in the queue, with one attempt counted.
    op.execute("UPDATE processed.batch_attempts SET attempts = 1 WHERE attempts = 0")
    op.execute(
        "ALTER TABLE processed.batch_attempts DROP CONSTRAINT batch_attempts_attempts_check,"
        " ADD CONSTRAINT batch_attempts_attempts_check CHECK (attempts > 0)"
    )
