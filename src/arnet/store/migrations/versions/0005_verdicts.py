"""Operator feedback: the detector that scored each alert, its segments' features, verdicts.

- `alert_detectors`: the run (folder or checkpoint) and version that scored an alert.
- `alert_features`: the model's input feature of each segment of an alert (float32 bytes),
  so that a false alarm's segments can join a detector's normal examples later.
- `verdicts`: an operator's "false-alarm" or "real" on an alert, with who, when and a note;
  every verdict is kept, the latest one of an alert counts.

Revision ID: 0005_verdicts
Revises: 0004_clips
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_verdicts"
down_revision = "0004_clips"
branch_labels = None
depends_on = None


def _alert_id(primary_key: bool = False) -> sa.Column:
    return sa.Column(
        "alert_id",
        sa.Integer,
        sa.ForeignKey("alerts.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
    )


def upgrade() -> None:
    op.create_table(
        "alert_detectors",
        _alert_id(primary_key=True),
        sa.Column("run", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        "alert_features",
        sa.Column("id", sa.Integer, primary_key=True),
        _alert_id(),
        sa.Column("segment", sa.Integer, nullable=False),
        sa.Column("shape", sa.String(40), nullable=False),
        sa.Column("feature", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("alert_id", "segment", name="uq_alert_features_alert_segment"),
    )
    op.create_table(
        "verdicts",
        sa.Column("id", sa.Integer, primary_key=True),
        _alert_id(),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("by", sa.String(200)),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_verdicts_alert", "verdicts", ["alert_id"])


def downgrade() -> None:
    op.drop_index("ix_verdicts_alert", "verdicts")
    op.drop_table("verdicts")
    op.drop_table("alert_features")
    op.drop_table("alert_detectors")
