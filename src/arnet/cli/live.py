"""`arnet watch` and `arnet alerts`: live cameras into the event store (arnet.live)."""

from ..live.command import run_alerts, run_watch

__all__ = ["run_alerts", "run_watch"]
