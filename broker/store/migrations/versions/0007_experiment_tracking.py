"""experiment tracking: experiments, runs, params, tags, metric points, latest metrics, logged models

Revision ID: 0007
Revises: 0006
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tracking_experiment",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("owner", sa.String(length=256), nullable=False),
        sa.Column("artifact_location", sa.Text(), nullable=False),
        sa.Column("lifecycle_stage", sa.String(length=16), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_update_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("tracking_experiment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tracking_experiment_namespace"), ["namespace"], unique=False)

    op.create_table(
        "tracking_experiment_tag",
        sa.Column("experiment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["tracking_experiment.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("experiment_id", "key"),
    )
    op.create_table(
        "tracking_logged_model",
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("experiment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("artifact_uri", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=True),
        sa.Column("model_type", sa.String(length=500), nullable=True),
        sa.Column("source_run_id", sa.String(length=32), nullable=True),
        sa.Column("lifecycle_stage", sa.String(length=16), nullable=False),
        sa.Column("creation_timestamp_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_updated_timestamp_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["tracking_experiment.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_id"),
    )
    with op.batch_alter_table("tracking_logged_model", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tracking_logged_model_experiment_id"), ["experiment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_tracking_logged_model_namespace"), ["namespace"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_tracking_logged_model_source_run_id"), ["source_run_id"], unique=False
        )

    op.create_table(
        "tracking_run",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("experiment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.BigInteger(), nullable=True),
        sa.Column("deleted_time", sa.BigInteger(), nullable=True),
        sa.Column("lifecycle_stage", sa.String(length=16), nullable=False),
        sa.Column("artifact_uri", sa.Text(), nullable=False),
        sa.Column("workload_id", sa.String(length=64), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=True),
        sa.Column("outputs", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["experiment_id"], ["tracking_experiment.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )
    with op.batch_alter_table("tracking_run", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tracking_run_experiment_start", ["experiment_id", "start_time"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_tracking_run_namespace"), ["namespace"], unique=False)
        batch_op.create_index(batch_op.f("ix_tracking_run_workload_id"), ["workload_id"], unique=False)

    op.create_table(
        "tracking_latest_metric",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("is_nan", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["tracking_run.run_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "key"),
    )
    with op.batch_alter_table("tracking_latest_metric", schema=None) as batch_op:
        batch_op.create_index("ix_tracking_latest_metric_key_value", ["key", "value"], unique=False)

    op.create_table(
        "tracking_logged_model_param",
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["tracking_logged_model.model_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_id", "key"),
    )
    op.create_table(
        "tracking_logged_model_tag",
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["tracking_logged_model.model_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_id", "key"),
    )
    op.create_table(
        "tracking_metric",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("is_nan", sa.Boolean(), nullable=False),
        sa.Column("replica", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=True),
        sa.Column("dataset_name", sa.String(length=500), nullable=True),
        sa.Column("dataset_digest", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "key", "step", "timestamp", "value", "is_nan", "replica"),
    )
    op.create_table(
        "tracking_param",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["tracking_run.run_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "key"),
    )
    op.create_table(
        "tracking_tag",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["tracking_run.run_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "key"),
    )
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.alter_column(
            "access_token",
            existing_type=sa.VARCHAR(length=128),
            type_=sa.String(length=512),
            existing_nullable=True,
        )
    # MLflow clients log to experiment "0" when they name none.
    experiment = sa.table(
        "tracking_experiment",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("namespace", sa.String),
        sa.column("owner", sa.String),
        sa.column("artifact_location", sa.Text),
        sa.column("lifecycle_stage", sa.String),
        sa.column("creation_time", sa.BigInteger),
        sa.column("last_update_time", sa.BigInteger),
    )
    stamp = int(time.time() * 1000)
    op.bulk_insert(
        experiment,
        [
            {
                "id": 0,
                "name": "Default",
                "namespace": "*",
                "owner": "",
                "artifact_location": "mlflow-artifacts:/0",
                "lifecycle_stage": "active",
                "creation_time": stamp,
                "last_update_time": stamp,
            }
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.alter_column(
            "access_token",
            existing_type=sa.String(length=512),
            type_=sa.VARCHAR(length=128),
            existing_nullable=True,
        )

    op.drop_table("tracking_tag")
    op.drop_table("tracking_param")
    op.drop_table("tracking_metric")
    op.drop_table("tracking_logged_model_tag")
    op.drop_table("tracking_logged_model_param")
    with op.batch_alter_table("tracking_latest_metric", schema=None) as batch_op:
        batch_op.drop_index("ix_tracking_latest_metric_key_value")

    op.drop_table("tracking_latest_metric")
    with op.batch_alter_table("tracking_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracking_run_workload_id"))
        batch_op.drop_index(batch_op.f("ix_tracking_run_namespace"))
        batch_op.drop_index("ix_tracking_run_experiment_start")

    op.drop_table("tracking_run")
    with op.batch_alter_table("tracking_logged_model", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracking_logged_model_source_run_id"))
        batch_op.drop_index(batch_op.f("ix_tracking_logged_model_namespace"))
        batch_op.drop_index(batch_op.f("ix_tracking_logged_model_experiment_id"))

    op.drop_table("tracking_logged_model")
    op.drop_table("tracking_experiment_tag")
    with op.batch_alter_table("tracking_experiment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracking_experiment_namespace"))

    op.drop_table("tracking_experiment")
