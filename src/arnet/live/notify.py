"""The targets of `arnet watch --notify URL...`: a webhook or an MQTT sender per URL, each
behind its `NetworkSink` (`live.sinks`)."""

from __future__ import annotations

from collections.abc import Sequence

from .mqtt import MqttSender
from .sinks import NetworkSink, NotifyOptions, check_target, shown
from .webhook import WebhookSender


def make_sinks(
    urls: Sequence[str],
    secret: bytes | None = None,
    options: NotifyOptions | None = None,
    client_id: str = "arnet-watch",
) -> list[NetworkSink]:
    """The network sinks of `--notify URL...` (each URL checked first, a repeated one once).

    Raises:
        NotifyError: a bad URL, or the library of its scheme is missing (the notify extra).
    """
    options = options or NotifyOptions()
    schemes = {url: check_target(url) for url in urls}
    sinks, seen = [], set()
    for url, scheme in schemes.items():
        if shown(url) in seen:
            continue
        seen.add(shown(url))
        if scheme.startswith("http"):
            sinks.append(NetworkSink(WebhookSender(url, secret, options.timeout), options))
        else:
            sinks.append(NetworkSink(MqttSender(url, options.timeout, client_id), options))
    return sinks
