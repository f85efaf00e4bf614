"""model serving: members of existing default policies get the serve lines of the new default
policy

Revision ID: 0011
Revises: 0010

Served models are workloads of kind ``serve`` (the workload table holds them: the kind column,
the resolved model in the spec, the server token in ``access_token``), so no table changes. A
database seeded before this revision holds an older default policy. Its members get the new
default's ``serve/*`` lines (submit, read, logs, kill, delete, invoke) exactly when their policy
still has both default member notebook lines for submit and read, as 0008 and 0010 decided for
theirs: a policy without them was edited on purpose and gets nothing. The change is recorded as
a policy revision authored ``broker``. A database never seeded is left alone.
"""

import time
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

DEFAULT_MEMBER_NOTEBOOK = ("p, member, *, notebook/*, submit, allow", "p, member, *, notebook/*, read, allow")
SERVE_LINES = tuple(
    f"p, member, *, serve/*, {act}, allow" for act in ("submit", "read", "logs", "kill", "delete", "invoke")
)
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
    conn = op.get_bind()
    latest = conn.execute(sa.select(sa.func.max(_revision.c.revision))).scalar()
    if not latest:
        return  # never seeded: the first start loads the new default policy
    live = set(conn.execute(sa.select(_line.c.text)).scalars())
    if not all(line in live for line in DEFAULT_MEMBER_NOTEBOOK):
        return
    added = [line for line in SERVE_LINES if line not in live]
    if not added:
        return
    _record(conn, latest + 1, added, [], "migration 0011: members get the default policy's serve/* lines")
    conn.execute(sa.insert(_line), [{"text": text, "ptype": "p"} for text in added])


def _record(conn: sa.Connection, number: int, added: list[str], removed: list[str], message: str) -> None:
    stamp = datetime.fromtimestamp(time.time(), UTC).replace(tzinfo=None)  # stored as naive UTC
    conn.execute(
        sa.insert(_revision).values(
            revision=number, author=AUTHOR, at=stamp, added=added, removed=removed, message=message
        )
    )


def downgrade() -> None:
    # Code before 0011 refuses lines on serve objects and the invoke action: take them out.
    conn = op.get_bind()
    live = conn.execute(sa.select(_line.c.text)).scalars().all()
    gone = sorted(t for t in live if ", serve/" in t or ", serve," in t or ", invoke," in t)
    if gone:
        latest = conn.execute(sa.select(sa.func.max(_revision.c.revision))).scalar() or 0
        _record(conn, latest + 1, [], gone, "migration 0011 downgrade: lines on served models removed")
        conn.execute(sa.delete(_line).where(_line.c.text.in_(gone)))
