"""experiment templates; the template an experiment was submitted from; members of existing
default policies get the template lines of the new default policy

Revision ID: 0010
Revises: 0009

A database seeded before this revision holds an older default policy. Its members get the new
default's ``template/*`` lines (read, edit, delete) exactly when their policy still has both
default member tracking lines (``p, member, *, tracking/*, read|write, allow``), as migration
0008 decided for the model lines: a policy without them was edited on purpose and gets nothing.
The change is recorded as a policy revision authored ``broker``. A database never seeded is left
alone: its first start seeds the new default.
"""

import time
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DEFAULT_MEMBER_TRACKING = ("p, member, *, tracking/*, read, allow", "p, member, *, tracking/*, write, allow")
TEMPLATE_LINES = tuple(f"p, member, *, template/*, {act}, allow" for act in ("read", "edit", "delete"))
AUTHOR = "broker"

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
        "experiment_template",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("experiment_template", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_experiment_template_namespace"), ["namespace"], unique=False)
    with op.batch_alter_table("experiment") as batch:
        batch.add_column(sa.Column("template", sa.JSON(), nullable=True))
    _extend_default_policy()


def _extend_default_policy() -> None:
    conn = op.get_bind()
    latest = conn.execute(sa.select(sa.func.max(_revision.c.revision))).scalar()
    if not latest:
        return  # never seeded: the first start loads the new default policy
    live = set(conn.execute(sa.select(_line.c.text)).scalars())
    if not all(line in live for line in DEFAULT_MEMBER_TRACKING):
        return
    added = [line for line in TEMPLATE_LINES if line not in live]
    if not added:
        return
    _record(conn, latest + 1, added, [], "migration 0010: members get the default policy's template/* lines")
    conn.execute(sa.insert(_line), [{"text": text, "ptype": "p"} for text in added])


def _record(conn: sa.Connection, number: int, added: list[str], removed: list[str], message: str) -> None:
    stamp = datetime.fromtimestamp(time.time(), UTC).replace(tzinfo=None)  # stored as naive UTC
    conn.execute(
        sa.insert(_revision).values(
            revision=number, author=AUTHOR, at=stamp, added=added, removed=removed, message=message
        )
    )


def downgrade() -> None:
    # Code before 0010 refuses lines on template objects: take them out.
    conn = op.get_bind()
    live = conn.execute(sa.select(_line.c.text)).scalars().all()
    gone = sorted(t for t in live if ", template/" in t or ", template," in t)
    if gone:
        latest = conn.execute(sa.select(sa.func.max(_revision.c.revision))).scalar() or 0
        _record(conn, latest + 1, [], gone, "migration 0010 downgrade: lines on templates removed")
        conn.execute(sa.delete(_line).where(_line.c.text.in_(gone)))

    with op.batch_alter_table("experiment") as batch:
        batch.drop_column("template")
    with op.batch_alter_table("experiment_template", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiment_template_namespace"))
    op.drop_table("experiment_template")
