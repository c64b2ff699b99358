"""Webhooks of `arnet watch --notify https://...`: each alert event POSTed as JSON (httpx).

The body is the delivery's stored JSON (`store.deliveries.payload`), sent byte for byte the
same on every attempt; with a secret (`--notify-secret-file`) the header
`X-Arnet-Signature: sha256=<hex HMAC-SHA256(secret, body)>` lets the receiver check it came
from this watcher. `X-Arnet-Event` (and `Idempotency-Key`) carry the event id a receiver
deduplicates on. Any 2xx answer acknowledges the delivery; anything else, a refused
connection or no answer within the timeout is a failed attempt, tried again with backoff.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from ..errors import MissingExtraError
from .sinks import DeliveryFailed, shown

SIGNATURE_HEADER = "X-Arnet-Signature"
EVENT_HEADER = "X-Arnet-Event"


def signature(secret: bytes, body: bytes) -> str:
    """The value of `X-Arnet-Signature` for `body`: `sha256=` and the HMAC's hex digest."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """What a receiver checks (in constant time): the header is the body's signature."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)


class WebhookSender:
    """POSTs deliveries to one URL.

    Args:
        url: http:// or https:// (certificates verified).
        secret: the HMAC key (None: unsigned).
        timeout: seconds for connecting, sending and the answer.
    """

    def __init__(self, url: str, secret: bytes | None, timeout: float) -> None:
        try:
            import httpx
        except ImportError:
            raise MissingExtraError(
                f'--notify {shown(url)}: webhooks need httpx: pip install "arnet-vad[notify]"'
            ) from None
        from .. import __version__

        self.url, self.secret, self.timeout = url, secret, timeout
        self.target = shown(url)
        self.httpx = httpx
        self.client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": f"arnet/{__version__}"},
        )

    def connect(self, cameras: Mapping[int, str], states: Mapping[str, bool]) -> None:
        """Nothing to do before the first POST (each opens or reuses a connection)."""

    def send(self, delivery: Mapping[str, Any]) -> None:
        body = delivery["payload"].encode()
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: delivery["event_id"],
            "Idempotency-Key": delivery["event_id"],
        }
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = signature(self.secret, body)
        try:
            answer = self.client.post(self.url, content=body, headers=headers)
        except self.httpx.TimeoutException:
            raise DeliveryFailed(f"no answer within {self.timeout:g} s") from None
        except self.httpx.HTTPError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DeliveryFailed(f"{type(exc).__name__}: {reason}") from None
        if not 200 <= answer.status_code < 300:
            text = answer.text.strip().replace("\n", " ")[:120]
            raise DeliveryFailed(
                f"HTTP {answer.status_code} {answer.reason_phrase}" + (f": {text}" if text else "")
            )

    def close(self) -> None:
        self.client.close()
