"""environments: registered environments, their revisions, builds per cluster; the environment a
workload pinned; every caller may read and edit environments in existing default policies

Revision ID: 0009
Revises: 0008

Environments are global (Submarine's are): the policy is asked about ``environment/<name>`` in the
domain ``*``. A database seeded before this revision gets the new default's environment lines
(everyone reads and edits; deleting stays an admin's) exactly when its policy still has the
default "everyone sees the clusters" line (``p, *, *, cluster/*, read, allow``): a policy without
it was edited on purpose and gets nothing. The change is recorded as a policy revision authored
``broker``. A database never seeded is left alone: its first start seeds the new default.

Like Submarine's database, every broker starts with the environment ``notebook-env`` (the name
Submarine's clients put in a NotebookSpec): it installs nothing, so a notebook runs the cluster's
own Python and Jupyter. It is an ordinary environment: an admin may edit or delete it.
"""

import time
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from runtimes.environment import environment_hash

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: What tells an existing policy still has the default "everyone" rules.
DEFAULT_EVERYONE_READS_CLUSTERS = "p, *, *, cluster/*, read, allow"
ENVIRONMENT_LINES = tuple(f"p, *, *, environment/*, {act}, allow" for act in ("read", "edit"))
AUTHOR = "broker"
#: Submarine's own id of its seeded notebook environment (a stamp no broker claims again).
NOTEBOOK_ENV_ID = "environment_1600862964725_0001"
NOTEBOOK_ENV = {
    "name": "notebook-env",
    "dockerImage": None,
    "image": None,
    "kernelSpec": None,
    "description": "Submarine's default notebook environment: the cluster's own Python and Jupyter, "
    "nothing installed",
}

_line = sa.table("policy_line", sa.column("text", sa.String), sa.column("ptype", sa.String))
_revision = sa.table(
    "policy_revision",
    sa.column("revision", sa.Integer),
    sa.column("author", sa.String),
    sa.column("at", sa.DateTime),
    sa.column("added", sa.JSON),
    sa.column("removed", sa.JSON),
    sa.column("message", sa.Text),
)


def upgrade() -> None:
    op.create_table(
        "environment",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", name="uq_environment_name"),
    )
    op.create_table(
        "environment_revision",
        sa.Column("environment_id", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["environment_id"], ["environment.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("environment_id", "revision"),
    )
    with op.batch_alter_table("environment_revision", schema=None) as batch_op:
        batch_op.create_index("ix_environment_revision_hash", ["hash"], unique=False)

    op.create_table(
        "environment_build",
        sa.Column("cluster", sa.String(length=63), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("built_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("cluster", "hash"),
    )
    with op.batch_alter_table("environment_build", schema=None) as batch_op:
        batch_op.create_index("ix_environment_build_hash", ["hash"], unique=False)

    with op.batch_alter_table("experiment") as batch:
        batch.add_column(sa.Column("environment", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("environment_hash", sa.String(length=64), nullable=True))
        batch.create_index("ix_experiment_environment_hash", ["environment_hash"])

    _seed_notebook_environment()
    _extend_default_policy()


def _seed_notebook_environment() -> None:
    stamp = datetime.fromtimestamp(time.time(), UTC).replace(tzinfo=None)  # stored as naive UTC
    environment = sa.table(
        "environment",
        *(sa.column(c) for c in ("id", "name", "revision", "owner", "created_at", "updated_at")),
    )
    revisions = sa.table(
        "environment_revision",
        *(sa.column(c) for c in ("environment_id", "revision", "hash", "author", "created_at")),
        sa.column("spec", sa.JSON),
    )
    conn = op.get_bind()
    conn.execute(
        sa.insert(environment).values(
            id=NOTEBOOK_ENV_ID,
            name="notebook-env",
            revision=1,
            owner=AUTHOR,
            created_at=stamp,
            updated_at=stamp,
        )
    )
    empty = environment_hash(image=None, pip=[], conda=[], channels=[], python=None)
    conn.execute(
        sa.insert(revisions).values(
            environment_id=NOTEBOOK_ENV_ID,
            revision=1,
            spec=NOTEBOOK_ENV,
            hash=empty,
            author=AUTHOR,
            created_at=stamp,
        )
    )


def _extend_default_policy() -> None:
    conn = op.get_bind()
    latest = conn.execute(sa.select(sa.func.max(_revision.c.revision))).scalar()
    if not latest:
        return  # never seeded: the first start loads the new default policy
    live = set(conn.execute(sa.select(_line.c.text)).scalars())
    if DEFAULT_EVERYONE_READS_CLUSTERS not in live:
        return
    added = [line for line in ENVIRONMENT_LINES if line not in live]
    if not added:
        return
    message = "migration 0009: everyone gets the default policy's environment/* lines"
    _record(conn, latest + 1, added, [], message)
    conn.execute(sa.insert(_line), [{"text": text, "ptype": "p"} for text in added])


def _record(conn: sa.Connection, number: int, added: list[str], removed: list[str], message: str) -> None:
    stamp = datetime.fromtimestamp(time.time(), UTC).replace(tzinfo=None)  # stored as naive UTC
    conn.execute(
        sa.insert(_revision).values(
            revision=number, author=AUTHOR, at=stamp, added=added, removed=removed, message=message
        )
    )


def downgrade() -> None:
    # Code before 0009 refuses lines on environment objects: take them out.
    conn = op.get_bind()
    live = conn.execute(sa.select(_line.c.text)).scalars().all()
    gone = sorted(t for t in live if ", environment/" in t or ", environment," in t)
    if gone:
        latest = conn.execute(sa.select(sa.func.max(_revision.c.revision))).scalar() or 0
        _record(conn, latest + 1, [], gone, "migration 0009 downgrade: lines on environments removed")
        conn.execute(sa.delete(_line).where(_line.c.text.in_(gone)))

    with op.batch_alter_table("experiment") as batch:
        batch.drop_index("ix_experiment_environment_hash")
        batch.drop_column("environment_hash")
        batch.drop_column("environment")
    with op.batch_alter_table("environment_build", schema=None) as batch_op:
        batch_op.drop_index("ix_environment_build_hash")
    op.drop_table("environment_build")
    with op.batch_alter_table("environment_revision", schema=None) as batch_op:
        batch_op.drop_index("ix_environment_revision_hash")
    op.drop_table("environment_revision")
    op.drop_table("environment")
