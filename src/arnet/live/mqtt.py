"""MQTT of `arnet watch --notify mqtt://HOST:PORT/TOPIC` (paho-mqtt), for Home Assistant and
other home-automation hubs.

- `TOPIC/CAMERA/events`: each alert event's JSON (the webhook's body), QoS 1;
- `TOPIC/CAMERA/state`: `ON` while the camera has an open alert, `OFF` otherwise; QoS 1,
  retained (a subscriber that connects later reads the current state);
- `homeassistant/binary_sensor/arnet_CAMERA/config`: Home Assistant's MQTT discovery of a
  binary sensor per camera (retained, published at every connection), whose state is the
  state topic and whose attributes are the last event.

CAMERA is the camera's name with every character but letters, digits, `-` and `_` replaced by
`_` (MQTT topics and Home Assistant's ids take no `/`, `+` or `#`). A delivery is acknowledged
when the broker has acknowledged its publications (PUBACK); paho keeps the connection, and
reconnects with backoff when the broker goes away.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import MissingExtraError
from .sinks import DeliveryFailed, shown

DISCOVERY_PREFIX = "homeassistant"
PASSWORD_VARIABLE = "ARNET_MQTT_PASSWORD"


def slug(camera: str) -> str:
    """A camera name as a topic level and an id: letters, digits, `-` and `_` only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", camera)


def discovery(base: str, camera: str) -> tuple[str, dict[str, Any]]:
    """The topic and payload announcing a camera's binary sensor to Home Assistant."""
    s = slug(camera)
    return f"{DISCOVERY_PREFIX}/binary_sensor/arnet_{s}/config", {
        "name": "Anomaly",
        "unique_id": f"arnet_{s}",
        "object_id": f"arnet_{s}",
        "state_topic": f"{base}/{s}/state",
        "payload_on": "ON",
        "payload_off": "OFF",
        "device_class": "problem",
        "json_attributes_topic": f"{base}/{s}/events",
        "device": {
            "identifiers": [f"arnet_{s}"],
            "name": f"arnet {camera}",
            "manufacturer": "arnet",
            "model": "arnet watch",
        },
    }


class MqttSender:
    """Publishes deliveries on one broker, under one base topic.

    Args:
        url: mqtt://[USER@]HOST[:PORT]/TOPIC (port 1883), or mqtts:// (TLS, certificates
            verified; port 8883); USER's password from the environment variable
            ARNET_MQTT_PASSWORD (or USER:PASSWORD@, which other users of the machine see).
        timeout: seconds to wait for the broker's acknowledgement.
        client_id: the MQTT client id (unique per watcher).
    """

    def __init__(self, url: str, timeout: float, client_id: str) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise MissingExtraError(
                f'--notify {shown(url)}: MQTT needs paho-mqtt: pip install "arnet-vad[notify]"'
            ) from None
        parts = urlsplit(url)
        self.target = shown(url)
        self.host = parts.hostname or ""
        tls = parts.scheme.lower() == "mqtts"
        self.port = parts.port or (8883 if tls else 1883)
        self.base = unquote(parts.path.strip("/"))
        self.timeout = timeout
        self.connected = threading.Event()
        self.last_error = "not connected yet"
        self.refusal: str | None = None  # why the broker refused the last connection
        self.states: dict[str, bool] = {}  # camera -> state last published (ON: True)
        self.cameras: list[str] = []
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        if parts.username:
            # a password on the command line shows in `ps`: ARNET_MQTT_PASSWORD instead
            password = unquote(parts.password) if parts.password is not None else None
            client.username_pw_set(
                unquote(parts.username), password or os.environ.get(PASSWORD_VARIABLE)
            )
        if tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.client = client
        self.lock = threading.Lock()

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.refusal = self.last_error = f"the broker refused the connection ({reason})"
            return
        self.refusal = None
        with self.lock:
            for camera in self.cameras:
                topic, config = discovery(self.base, camera)
                client.publish(topic, json.dumps(config), qos=1, retain=True)
                if camera in self.states:
                    state = "ON" if self.states[camera] else "OFF"
                    client.publish(self._topic(camera, "state"), state, qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        self.last_error = self.refusal or f"disconnected from the broker ({reason})"

    def _topic(self, camera: str, leaf: str) -> str:
        return f"{self.base}/{slug(camera)}/{leaf}"

    def connect(self, cameras: Mapping[int, str], states: Mapping[str, bool]) -> None:
        """Connect in the background (paho's thread): discovery and the cameras' states are
        published on every connection."""
        self.cameras = list(cameras.values())
        self.states = dict(states)
        try:
            self.client.connect_async(self.host, self.port, keepalive=30)
        except (OSError, ValueError) as exc:
            self.last_error = str(exc)
        self.client.loop_start()

    def send(self, delivery: Mapping[str, Any]) -> None:
        if not self.connected.wait(self.timeout):
            raise DeliveryFailed(
                f"not connected to the broker {self.host}:{self.port} ({self.last_error})"
            )
        event = json.loads(delivery["payload"])
        camera = event["camera"]
        infos = [self.client.publish(self._topic(camera, "events"), delivery["payload"], qos=1)]
        on = {"opened": True, "closed": False}.get(delivery["kind"])
        if on is not None:
            with self.lock:
                self.states[camera] = on
            state = "ON" if on else "OFF"
            infos.append(
                self.client.publish(self._topic(camera, "state"), state, qos=1, retain=True)
            )
        for info in infos:
            try:
                info.wait_for_publish(self.timeout)
            except (RuntimeError, ValueError) as exc:
                raise DeliveryFailed(f"not published ({exc})") from None
            if not info.is_published():
                raise DeliveryFailed(
                    f"broker {self.host}:{self.port} did not acknowledge within {self.timeout:g} s"
                )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
