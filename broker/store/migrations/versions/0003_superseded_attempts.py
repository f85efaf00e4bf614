"""superseded attempts

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "superseded_attempt",
        sa.Column("uid", sa.String(length=64), nullable=False),
        sa.Column("experiment_id", sa.String(length=64), nullable=False),
        sa.Column("cluster", sa.String(length=63), nullable=False),
        sa.Column("handle", sa.JSON(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("superseded_at", sa.DateTime(), nullable=False),
        sa.Column("swept_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiment.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("uid"),
    )
    with op.batch_alter_table("superseded_attempt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_superseded_attempt_cluster"), ["cluster"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_superseded_attempt_experiment_id"), ["experiment_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("superseded_attempt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_superseded_attempt_experiment_id"))
        batch_op.drop_index(batch_op.f("ix_superseded_attempt_cluster"))

    op.drop_table("superseded_attempt")
