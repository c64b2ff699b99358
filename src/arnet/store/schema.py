"""The event store's tables (SQLAlchemy Core): cameras, their segment scores and events,
alerts and acknowledgements, and the lease of the one watcher writing each camera.

Times are seconds since the Unix epoch (UTC) as floats: portable between SQLite and
PostgreSQL, and ordered and filtered as numbers. Frames and segments are counted per camera
from its first frame ever watched, so a restarted watcher continues the numbering.

The migrations under `migrations/versions/` create exactly these tables; a change here needs
a new migration (the test suite compares the two).
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

CAMERA_STATES = ("starting", "streaming", "reconnecting", "stopped", "failed")
ALERT_STATES = ("open", "closed")

metadata = MetaData()

cameras = Table(
    "cameras",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("source", Text, nullable=False),
    Column("state", String(20), nullable=False, default="starting"),
    Column("state_detail", Text),
    Column("start_threshold", Float),
    Column("stop_threshold", Float),
    Column("fps", Float),
    Column("frames_per_segment", Integer),
    Column("next_segment", Integer, nullable=False, default=0),
    Column("next_frame", Integer, nullable=False, default=0),
    # frames read from the camera's file or folder so far, skipped ones included (a restart
    # reads on from here)
    Column("source_position", Integer, nullable=False, default=0, server_default="0"),
    Column("last_seen", Float),
    Column("last_score", Float),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
)

segment_scores = Table(
    "segment_scores",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("camera_id", Integer, ForeignKey("cameras.id", ondelete="CASCADE"), nullable=False),
    Column("segment", Integer, nullable=False),
    Column("start_frame", Integer, nullable=False),
    Column("end_frame", Integer, nullable=False),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float, nullable=False),
    Column("score", Float, nullable=False),
    UniqueConstraint("camera_id", "segment", name="uq_segment_scores_camera_segment"),
    Index("ix_segment_scores_camera_time", "camera_id", "start_time"),
)

camera_events = Table(
    "camera_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("camera_id", Integer, ForeignKey("cameras.id", ondelete="CASCADE"), nullable=False),
    Column("time", Float, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("detail", Text),
    Column("frame", Integer),
    Index("ix_camera_events_camera_time", "camera_id", "time"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("camera_id", Integer, ForeignKey("cameras.id", ondelete="CASCADE"), nullable=False),
    Column("state", String(10), nullable=False),
    Column("start_segment", Integer, nullable=False),
    Column("end_segment", Integer, nullable=False),
    Column("start_frame", Integer, nullable=False),
    Column("end_frame", Integer, nullable=False),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float, nullable=False),
    Column("peak_score", Float, nullable=False),
    Column("peak_frame", Integer, nullable=False),
    Column("peak_time", Float, nullable=False),
    Column("peak_image", LargeBinary),
    Column("threshold", Float),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    UniqueConstraint("camera_id", "start_segment", name="uq_alerts_camera_start"),
    Index("ix_alerts_start_time", "start_time"),
)

acknowledgements = Table(
    "acknowledgements",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("time", Float, nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("by", String(200)),
    Index("ix_acknowledgements_alert", "alert_id"),
)

# The watcher writing a camera: one row per camera while it is watched (see EventStore.claim).
camera_leases = Table(
    "camera_leases",
    metadata,
    Column("camera_id", Integer, ForeignKey("cameras.id", ondelete="CASCADE"), primary_key=True),
    Column("token", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("process", String(200)),
    Column("command", Text),
    Column("acquired", Float, nullable=False),
    Column("renewed", Float, nullable=False),
    Column("expires", Float, nullable=False),
)

# Alerts going out (`arnet watch --notify`): one row per alert event (opened, updated,
# closed) and target, written in the transaction of the alert it reports; pending until the
# receiver acknowledges it, dead once retries are spent (see `store.deliveries`).
DELIVERY_STATES = ("pending", "delivered", "dead")

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("camera_id", Integer, ForeignKey("cameras.id", ondelete="CASCADE"), nullable=False),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", String(100), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("target", String(1000), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(10), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt", Float, nullable=False),
    Column("last_error", Text),
    Column("created", Float, nullable=False),
    Column("finished", Float),
    UniqueConstraint("event_id", "target", name="uq_deliveries_event_target"),
    Index("ix_deliveries_target_status", "target", "status", "id"),
    Index("ix_deliveries_alert", "alert_id"),
)

# An alert's clip (`arnet watch --clip-before/--clip-after`): the MP4 file, written whole and
# renamed before this row is (a watcher killed mid-clip leaves no row), and the frames it shows.
alert_clips = Table(
    "alert_clips",
    metadata,
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True),
    Column("path", Text, nullable=False),
    Column("start_frame", Integer, nullable=False),
    Column("end_frame", Integer, nullable=False),
    Column("start_time", Float, nullable=False),
    Column("fps", Float, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("created", Float, nullable=False),
)

# A camera's mask (`arnet watch --mask CAMERA=...`): the cells or pixels that count for nothing,
# as JSON (see `arnet.live.masks`), for the dashboard to draw.
camera_masks = Table(
    "camera_masks",
    metadata,
    Column("camera_id", Integer, ForeignKey("cameras.id", ondelete="CASCADE"), primary_key=True),
    Column("mask", Text, nullable=False),
    Column("updated", Float, nullable=False),
)

# The tables of the first schema: every arnet store has them, whatever its revision.
CORE_TABLES = ("cameras", "segment_scores", "camera_events", "alerts", "acknowledgements")

# Operator feedback (revision 0003): which detector scored each alert, the features of its
# segments (so a verdict can teach the detector without the footage), and the verdicts.
VERDICTS = ("false-alarm", "real")

alert_detectors = Table(
    "alert_detectors",
    metadata,
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True),
    Column("run", Text, nullable=False),  # the run folder (absolute) or checkpoint file
    Column("version", Integer, nullable=False),  # its version (0: as trained)
)

alert_features = Table(
    "alert_features",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("segment", Integer, nullable=False),
    Column("shape", String(40), nullable=False),  # "D" or "VxD"
    Column("feature", LargeBinary, nullable=False),  # float32, little-endian
    UniqueConstraint("alert_id", "segment", name="uq_alert_features_alert_segment"),
)

verdicts = Table(
    "verdicts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("verdict", String(20), nullable=False),
    Column("time", Float, nullable=False),
    Column("by", String(200)),
    Column("note", Text, nullable=False, default=""),
    Index("ix_verdicts_alert", "alert_id"),
)

FEEDBACK_TABLES = ("alert_detectors", "alert_features", "verdicts")
