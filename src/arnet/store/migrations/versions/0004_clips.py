"""Clips of alerts and masks of cameras.

- `alert_clips`: an alert's MP4 clip (its path, first and last frame, start time, rate, size
  and bytes), written by `arnet watch --clip-before/--clip-after` once the file is whole.
- `camera_masks`: the cells or pixels of a camera that count for nothing (`--mask`), as JSON.

Both are new tables: a store of an earlier revision is read as it is (no clip, no mask).

Revision ID: 0004_clips
Revises: 0003_deliveries
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_clips"
down_revision = "0003_deliveries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_clips",
        sa.Column(
            "alert_id",
            sa.Integer,
            sa.ForeignKey("alerts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("start_frame", sa.Integer, nullable=False),
        sa.Column("end_frame", sa.Integer, nullable=False),
        sa.Column("start_time", sa.Float, nullable=False),
        sa.Column("fps", sa.Float, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("bytes", sa.Integer, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "camera_masks",
        sa.Column(
            "camera_id",
            sa.Integer,
            sa.ForeignKey("cameras.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("mask", sa.Text, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("camera_masks")
    op.drop_table("alert_clips")
