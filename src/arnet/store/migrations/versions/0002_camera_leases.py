"""One writer per camera, and where each camera's source was read up to.

- `camera_leases`: the watcher process writing a camera (its host, PID, an identity of the
  process that tells it from a later one given the same PID, and a token of its own), taken
  when it starts, renewed by its commits and a heartbeat until `expires`, released when it
  stops.
- `cameras.source_position`: how far into its file or frame folder the camera was read (a
  skipped frame file counts, unlike `next_frame`); existing cameras start from `next_frame`,
  which it equalled until frames could be skipped.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "cameras",
        sa.Column("source_position", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.execute("UPDATE cameras SET source_position = next_frame")
    op.create_table(
        "camera_leases",
        sa.Column(
            "camera_id",
            sa.Integer,
            sa.ForeignKey("cameras.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("process", sa.String(200)),
        sa.Column("command", sa.Text),
        sa.Column("acquired", sa.Float, nullable=False),
        sa.Column("renewed", sa.Float, nullable=False),
        sa.Column("expires", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("camera_leases")
    with op.batch_alter_table("cameras") as batch:
        batch.drop_column("source_position")
