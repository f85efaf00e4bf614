"""one-time sign-in codes (a link that signs a browser in once: ``notebook open --sign-in-link``)

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signin_code",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column(
            "user", sa.String(128), sa.ForeignKey("broker_user.name", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("sealed_token", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_signin_code_user", "signin_code", ["user"])
    op.create_index("ix_signin_code_expires_at", "signin_code", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_signin_code_expires_at", table_name="signin_code")
    op.drop_index("ix_signin_code_user", table_name="signin_code")
    op.drop_table("signin_code")
