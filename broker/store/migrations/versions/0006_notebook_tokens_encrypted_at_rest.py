"""notebook tokens encrypted at rest, and the fingerprint of the key that encrypts them

Tokens stored in clear by earlier brokers are encrypted in place with the broker's secret key,
which the caller passes as ``secret_box`` (``broker.store.migrate.upgrade(engine, secrets=...)``:
``serve``, ``db upgrade``, ``user add`` and ``token create`` do). Without it the migration refuses
to run rather than leave them in clear. On SQLite, ``secure_delete`` zeroes the old cells so the
plaintext does not linger in free space; the column keeps its type there (SQLite does not enforce
lengths, and recreating the table would cascade-delete the events).

Revision ID: 0006
Revises: 0005
"""

from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TOKENS = sa.text("SELECT id, access_token FROM experiment WHERE access_token IS NOT NULL")
_SET = sa.text("UPDATE experiment SET access_token = :token WHERE id = :id")


def _box(rows: list[Any], doing: str) -> Any:
    box = context.config.attributes.get("secret_box")
    if rows and box is None:
        raise RuntimeError(
            f"migration 0006 {doing} {len(rows)} notebook token(s) with the broker's secret key, which was "
            "not given: run it with `submarine-broker db upgrade --config broker.yaml` (or start the broker)"
        )
    return box


def upgrade() -> None:
    bind = op.get_bind()
    rows = list(bind.execute(_TOKENS).all())
    box = _box(rows, "encrypts")
    op.create_table(
        "secret_key_check",
        sa.Column("name", sa.String(length=32), primary_key=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
    )
    if bind.dialect.name != "sqlite":
        op.alter_column(
            "experiment",
            "access_token",
            type_=sa.String(length=512),
            existing_type=sa.String(length=128),
            existing_nullable=True,
        )
    if not rows:
        return
    if bind.dialect.name == "sqlite":
        bind.exec_driver_sql("PRAGMA secure_delete = ON")
    for row_id, token in rows:
        bind.execute(_SET, {"id": row_id, "token": box.encrypt(token)})


def downgrade() -> None:
    bind = op.get_bind()
    rows = list(bind.execute(_TOKENS).all())
    box = _box(rows, "decrypts")
    for row_id, token in rows:
        bind.execute(_SET, {"id": row_id, "token": box.decrypt(token)})
    if bind.dialect.name != "sqlite":
        op.alter_column(
            "experiment",
            "access_token",
            type_=sa.String(length=128),
            existing_type=sa.String(length=512),
            existing_nullable=True,
        )
    op.drop_table("secret_key_check")
