"""The first schema: cameras, segment scores, camera events, alerts, acknowledgements.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cameras",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("state_detail", sa.Text),
        sa.Column("start_threshold", sa.Float),
        sa.Column("stop_threshold", sa.Float),
        sa.Column("fps", sa.Float),
        sa.Column("frames_per_segment", sa.Integer),
        sa.Column("next_segment", sa.Integer, nullable=False),
        sa.Column("next_frame", sa.Integer, nullable=False),
        sa.Column("last_seen", sa.Float),
        sa.Column("last_score", sa.Float),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )
    op.create_table(
        "segment_scores",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "camera_id",
            sa.Integer,
            sa.ForeignKey("cameras.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("segment", sa.Integer, nullable=False),
        sa.Column("start_frame", sa.Integer, nullable=False),
        sa.Column("end_frame", sa.Integer, nullable=False),
        sa.Column("start_time", sa.Float, nullable=False),
        sa.Column("end_time", sa.Float, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.UniqueConstraint("camera_id", "segment", name="uq_segment_scores_camera_segment"),
    )
    op.create_index("ix_segment_scores_camera_time", "segment_scores", ["camera_id", "start_time"])
    op.create_table(
        "camera_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "camera_id",
            sa.Integer,
            sa.ForeignKey("cameras.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("frame", sa.Integer),
    )
    op.create_index("ix_camera_events_camera_time", "camera_events", ["camera_id", "time"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "camera_id",
            sa.Integer,
            sa.ForeignKey("cameras.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("start_segment", sa.Integer, nullable=False),
        sa.Column("end_segment", sa.Integer, nullable=False),
        sa.Column("start_frame", sa.Integer, nullable=False),
        sa.Column("end_frame", sa.Integer, nullable=False),
        sa.Column("start_time", sa.Float, nullable=False),
        sa.Column("end_time", sa.Float, nullable=False),
        sa.Column("peak_score", sa.Float, nullable=False),
        sa.Column("peak_frame", sa.Integer, nullable=False),
        sa.Column("peak_time", sa.Float, nullable=False),
        sa.Column("peak_image", sa.LargeBinary),
        sa.Column("threshold", sa.Float),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
        sa.UniqueConstraint("camera_id", "start_segment", name="uq_alerts_camera_start"),
    )
    op.create_index("ix_alerts_start_time", "alerts", ["start_time"])
    op.create_table(
        "acknowledgements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "alert_id",
            sa.Integer,
            sa.ForeignKey("alerts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("by", sa.String(200)),
    )
    op.create_index("ix_acknowledgements_alert", "acknowledgements", ["alert_id"])


def downgrade() -> None:
    op.drop_table("acknowledgements")
    op.drop_table("alerts")
    op.drop_table("camera_events")
    op.drop_table("segment_scores")
    op.drop_table("cameras")
