"""notebooks: workload kind, live-name slot and the notebook's access columns

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("experiment") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="experiment"))
        batch.add_column(sa.Column("slot", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("access_token", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("access", sa.JSON(), nullable=True))
        batch.create_unique_constraint("uq_experiment_slot", ["slot"])
        batch.create_index("ix_experiment_kind_status", ["kind", "status"])


def downgrade() -> None:
    with op.batch_alter_table("experiment") as batch:
        batch.drop_index("ix_experiment_kind_status")
        batch.drop_constraint("uq_experiment_slot", type_="unique")
        batch.drop_column("access")
        batch.drop_column("access_token")
        batch.drop_column("slot")
        batch.drop_column("kind")
