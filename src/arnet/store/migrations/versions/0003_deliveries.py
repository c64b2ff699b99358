"""Alerts going out: the `deliveries` table of `arnet watch --notify`.

One row per alert event (opened, updated, closed) and target (a webhook URL or an MQTT
broker and topic), written in the same transaction as the alert row it reports: pending until
the receiver acknowledged it (an HTTP 2xx, an MQTT PUBACK), delivered, or dead once its
retries are spent (with the last error). A watcher killed between an alert and its delivery
finds the pending row when it starts again.

Revision ID: 0003_deliveries
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_deliveries"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "camera_id",
            sa.Integer,
            sa.ForeignKey("cameras.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "alert_id",
            sa.Integer,
            sa.ForeignKey("alerts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_id", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("target", sa.String(1000), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt", sa.Float, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("finished", sa.Float),
        sa.UniqueConstraint("event_id", "target", name="uq_deliveries_event_target"),
    )
    op.create_index("ix_deliveries_target_status", "deliveries", ["target", "status", "id"])
    op.create_index("ix_deliveries_alert", "deliveries", ["alert_id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_alert", "deliveries")
    op.drop_index("ix_deliveries_target_status", "deliveries")
    op.drop_table("deliveries")
