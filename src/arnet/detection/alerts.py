"""The alert rule of `arnet detect` and the live watcher: `arnet.evaluation.alerts`, where the
evaluation's event-level figures apply the same rule; re-exported here under its old name."""

from __future__ import annotations

from ..evaluation.alerts import Alert, check_alert_settings, find_alerts

__all__ = ["Alert", "check_alert_settings", "find_alerts"]
