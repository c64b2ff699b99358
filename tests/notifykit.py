"""Real receivers of the notify tests: an HTTP webhook receiver (a thread with http.server on
127.0.0.1) and a mosquitto broker started by the test (skipped, with the reason, without it)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A webhook receiver: records each POST (time received, headers, body) and answers
    `answer(number, request)` -> HTTP status (200 unless told otherwise).

    Args:
        port: 0 for any free port.
        answer: (request number from 0, the request) -> status.
        hold: when given, every request waits for it before being answered (a slow receiver).
    """

    def __init__(
        self,
        port: int = 0,
        answer: Callable[[int, dict[str, Any]], int] | None = None,
        hold: threading.Event | None = None,
    ) -> None:
        self.answer = answer or (lambda n, r: 200)
        self.hold = hold
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = {
                    "time": time.time(),
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                    "json": json.loads(body),
                }
                if receiver.hold is not None:
                    receiver.hold.wait()
                with receiver.lock:
                    number = len(receiver.requests)
                    receiver.requests.append(request)
                status = receiver.answer(number, request)
                request["status"] = status
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"no")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def accepted(self) -> list[dict[str, Any]]:
        """The requests answered 2xx."""
        with self.lock:
            return [r for r in self.requests if 200 <= r.get("status", 0) < 300]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.hold is not None:
            self.hold.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class Broker:
    """A mosquitto broker on 127.0.0.1:port (anonymous, in memory), stopped on exit."""

    def __init__(self, port: int = 0, users: dict[str, str] | None = None) -> None:
        if not os.path.exists(MOSQUITTO):
            pytest.skip(f"mosquitto is not installed ({MOSQUITTO}; Debian package mosquitto)")
        pytest.importorskip("paho.mqtt")
        self.port = port or free_port()
        self.folder = tempfile.mkdtemp(prefix="arnet-mqtt-")
        os.chmod(self.folder, 0o755)
        self.config = os.path.join(self.folder, "mosquitto.conf")
        lines = [f"listener {self.port} 127.0.0.1", "persistence false"]
        if users:  # only these users, with their passwords
            passwords = os.path.join(self.folder, "passwords")
            for i, (user, password) in enumerate(users.items()):
                made = subprocess.run(
                    [
                        "mosquitto_passwd",
                        *(["-c"] if i == 0 else []),
                        "-b",
                        passwords,
                        user,
                        password,
                    ],
                    capture_output=True,
                    text=True,
                )
                if made.returncode:
                    pytest.skip(f"mosquitto_passwd failed: {made.stderr.strip()}")
            os.chmod(passwords, 0o644)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", self.config],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                pytest.skip(f"mosquitto did not start: {err.strip()[-300:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        pytest.skip("mosquitto did not listen within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class Subscriber:
    """An MQTT client recording every message (topic, payload, retained) under `topics`."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("#",)) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool, float]] = []
        self.ready = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{free_port()}")

        def on_connect(c: Any, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
            c.subscribe([(t, 1) for t in topics])

        def on_subscribe(_c: Any, _u: Any, _mid: Any, _codes: Any, _p: Any) -> None:
            self.ready.set()

        def on_message(_c: Any, _u: Any, message: Any) -> None:
            self.messages.append((message.topic, message.payload, message.retain, time.time()))

        client.on_connect, client.on_message = on_connect, on_message
        client.on_subscribe = on_subscribe
        client.connect("127.0.0.1", port)
        client.loop_start()
        self.client = client
        assert self.ready.wait(30), "the test subscriber did not connect and subscribe"

    def on(self, topic: str) -> list[bytes]:
        return [m[1] for m in list(self.messages) if m[0] == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
