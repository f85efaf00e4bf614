"""indexes of the workload lists: newest first; of a status; in a namespace; both

Revision ID: 0012
Revises: 0011

The workbench's list (broker.workloads.listing) walks one of these down from a cursor and stops
after a page, so it costs the same at 1,000 and at 100,000 workloads.
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_experiment_kind_accepted": ["kind", "accepted_at", "id"],
    "ix_experiment_kind_status_accepted": ["kind", "status", "accepted_at", "id"],
    "ix_experiment_namespace_kind_accepted": ["namespace", "kind", "accepted_at", "id"],
    "ix_experiment_namespace_status_accepted": ["namespace", "status", "accepted_at", "id"],
}


def upgrade() -> None:
    for name, columns in _INDEXES.items():
        op.create_index(name, "experiment", columns)


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, table_name="experiment")
