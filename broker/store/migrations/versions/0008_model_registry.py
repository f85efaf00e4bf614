"""model registry: registered models, versions, tags, aliases, version files, history events;
members of existing default policies get the model lines of the new default policy

Revision ID: 0008
Revises: 0007

A database seeded before this revision holds the old default policy. Its members get the new
default's ``model/*`` lines (read, edit, promote, delete) exactly when their policy still has both
default member tracking lines (``p, member, *, tracking/*, read|write, allow``): those say the
operator kept the default "members work on their team's records" rule, which the registry
extends. A policy without them was edited on purpose and gets nothing; the change is recorded as
a policy revision authored ``broker``. A database never seeded (no revision) is left alone: its
first start seeds the new default.
"""

import time
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: What tells an existing policy still has the default member rules.
DEFAULT_MEMBER_TRACKING = ("p, member, *, tracking/*, read, allow", "p, member, *, tracking/*, write, allow")
MODEL_LINES = tuple(f"p, member, *, model/*, {act}, allow" for act in ("read", "edit", "promote", "delete"))
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


def _version_key() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["model_key", "version"],
        ["registry_version.model_key", "registry_version.version"],
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "registry_model",
        sa.Column("model_key", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_updated_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model_key"),
        sa.UniqueConstraint("name"),
        sqlite_autoincrement=True,  # a deleted model's key is never handed out again
    )
    with op.batch_alter_table("registry_model", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_registry_model_namespace"), ["namespace"], unique=False)

    op.create_table(
        "registry_model_tag",
        sa.Column("model_key", BigId, nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["model_key"], ["registry_model.model_key"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_key", "key"),
    )
    op.create_table(
        "registry_version",
        sa.Column("model_key", BigId, nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("logged_model_id", sa.String(length=64), nullable=True),
        sa.Column("run_link", sa.Text(), nullable=False),
        sa.Column("dataset", sa.Text(), nullable=True),
        sa.Column("model_type", sa.String(length=500), nullable=True),
        sa.Column("submarine_id", sa.String(length=500), nullable=True),
        sa.Column("tracking_experiment_id", sa.BigInteger(), nullable=True),
        sa.Column("workload_id", sa.String(length=64), nullable=True),
        sa.Column("cluster", sa.String(length=253), nullable=True),
        sa.Column("datasets", sa.JSON(), nullable=True),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_updated_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["model_key"], ["registry_model.model_key"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_key", "version"),
    )
    with op.batch_alter_table("registry_version", schema=None) as batch_op:
        batch_op.create_index("ix_registry_version_run_id", ["run_id"], unique=False)

    op.create_table(
        "registry_version_tag",
        sa.Column("model_key", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        _version_key(),
        sa.PrimaryKeyConstraint("model_key", "version", "key"),
    )
    op.create_table(
        "registry_alias",
        sa.Column("model_key", sa.BigInteger(), nullable=False),
        sa.Column("alias", sa.String(length=255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _version_key(),
        sa.PrimaryKeyConstraint("model_key", "alias"),
    )
    op.create_table(
        "registry_version_file",
        sa.Column("model_key", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=900), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        _version_key(),
        sa.PrimaryKeyConstraint("model_key", "version", "path"),
    )
    with op.batch_alter_table("registry_version_file", schema=None) as batch_op:
        batch_op.create_index("ix_registry_version_file_sha256", ["sha256"], unique=False)

    op.create_table(
        "registry_event",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("model_key", sa.BigInteger(), nullable=False),
        sa.Column("model_name", sa.String(length=256), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("via_run", sa.String(length=32), nullable=True),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("from_value", sa.Text(), nullable=True),
        sa.Column("to_value", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("registry_event", schema=None) as batch_op:
        batch_op.create_index("ix_registry_event_model", ["model_key", "id"], unique=False)
        batch_op.create_index("ix_registry_event_name", ["model_name"], unique=False)

    _extend_default_policy()


def _extend_default_policy() -> None:
    conn = op.get_bind()
    latest = conn.execute(sa.select(sa.func.max(_revision.c.revision))).scalar()
    if not latest:
        return  # never seeded: the first start loads the new default policy
    live = set(conn.execute(sa.select(_line.c.text)).scalars())
    if not all(line in live for line in DEFAULT_MEMBER_TRACKING):
        return
    added = [line for line in MODEL_LINES if line not in live]
    if not added:
        return
    _record(conn, latest + 1, added, [], "migration 0008: members get the default policy's model/* lines")
    conn.execute(sa.insert(_line), [{"text": text, "ptype": "p"} for text in added])


def _record(conn: sa.Connection, number: int, added: list[str], removed: list[str], message: str) -> None:
    stamp = datetime.fromtimestamp(time.time(), UTC).replace(tzinfo=None)  # stored as naive UTC
    conn.execute(
        sa.insert(_revision).values(
            revision=number, author=AUTHOR, at=stamp, added=added, removed=removed, message=message
        )
    )


def downgrade() -> None:
    # Code before 0008 refuses lines on model objects or the promote action: take them out.
    conn = op.get_bind()
    live = conn.execute(sa.select(_line.c.text)).scalars().all()
    gone = sorted(t for t in live if ", model/" in t or ", model," in t or ", promote," in t)
    if gone:
        latest = conn.execute(sa.select(sa.func.max(_revision.c.revision))).scalar() or 0
        _record(conn, latest + 1, [], gone, "migration 0008 downgrade: lines on models removed")
        conn.execute(sa.delete(_line).where(_line.c.text.in_(gone)))

    with op.batch_alter_table("registry_event", schema=None) as batch_op:
        batch_op.drop_index("ix_registry_event_name")
        batch_op.drop_index("ix_registry_event_model")
    op.drop_table("registry_event")
    with op.batch_alter_table("registry_version_file", schema=None) as batch_op:
        batch_op.drop_index("ix_registry_version_file_sha256")
    op.drop_table("registry_version_file")
    op.drop_table("registry_alias")
    op.drop_table("registry_version_tag")
    with op.batch_alter_table("registry_version", schema=None) as batch_op:
        batch_op.drop_index("ix_registry_version_run_id")
    op.drop_table("registry_version")
    op.drop_table("registry_model_tag")
    with op.batch_alter_table("registry_model", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_registry_model_namespace"))
    op.drop_table("registry_model")
