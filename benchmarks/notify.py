"""Delivery latency of `arnet watch --notify`: alert opened -> webhook received, and MQTT.

    python benchmarks/notify.py                  # 8 cameras, 3 runs
    python benchmarks/notify.py --cameras 8 --runs 3 --segments 24 --json notify.json

Each run: a small AR-Net model trained on generated footage (tests/livekit.py: grey noise,
a bright square in anomalous segments; 32x32 frames, EfficientNet-Lite0), and `--cameras`
H.264/MPEG-4 files of such footage (an anomalous burst every few segments, each camera with
its own seed and phase), replayed at 25 fps (`--realtime`, as cameras deliver frames) into one
watcher with two targets: a webhook (a real HTTP receiver: http.server in a thread on
127.0.0.1, HMAC-signed bodies verified on receipt) and a real mosquitto broker (started here,
a paho subscriber on `arnet/#`), both in this process, so one clock times everything.

Latency of an event = the time the receiver got it - the time the commit that stored it (the
alert row and its pending deliveries, one transaction) returned. `opened` is the latency the
issue asks for; every event (opened, updated, closed) is reported too. Baselines beside it:
the same receivers' round trip without arnet (an httpx POST of the same body from a fresh
thread; a paho QoS 1 publish to the same broker, received by the same subscriber), 200 times.

Printed: p50, p95 and max per run and over all runs, in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # livekit's footage and checkpoint, receivers

from livekit import footage, make_checkpoint, wait_for  # noqa: E402
from notifykit import Broker, Receiver, Subscriber  # noqa: E402

SECRET = b"benchmark secret"


def percentiles(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float) * 1000.0
    if not len(v):
        return {"n": 0}
    return {
        "n": int(len(v)),
        "p50_ms": round(float(np.percentile(v, 50)), 2),
        "p95_ms": round(float(np.percentile(v, 95)), 2),
        "max_ms": round(float(v.max()), 2),
    }


def camera_patterns(cameras: int, segments: int, seed: int) -> list[str]:
    """A burst of 2-3 anomalous segments every 6-8 segments, each camera at its own phase."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(cameras):
        pattern = list("." * segments)
        at = int(rng.integers(1, 4))
        while at + 3 < segments:
            length = int(rng.integers(2, 4))
            pattern[at : at + length] = "X" * length
            at += length + int(rng.integers(4, 6))
        out.append("".join(pattern))
    return out


def baseline(receiver: Receiver, broker_port: int, sub: Subscriber, n: int) -> dict:
    """Round trips without arnet: an httpx POST, a paho QoS 1 publish, to the same receivers."""
    import httpx
    import paho.mqtt.client as mqtt

    from arnet.live.webhook import signature

    body = json.dumps({"event": "baseline", "alert_id": 0}).encode()
    http_times = []
    with httpx.Client(timeout=10) as client:
        for _ in range(n):
            start = len(receiver.requests)
            sent = time.time()
            client.post(
                receiver.url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Arnet-Signature": signature(SECRET, body),
                },
            )
            http_times.append(receiver.requests[start]["time"] - sent)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-baseline")
    pub.connect("127.0.0.1", broker_port)
    pub.loop_start()
    mqtt_times = []
    try:
        for i in range(n):
            topic = f"baseline/{i}"
            sent = time.time()
            pub.publish(topic, body, qos=1).wait_for_publish(10)
            assert wait_for(lambda t=topic: any(m[0] == t for m in sub.messages), timeout=10)
            got = next(m[3] for m in sub.messages if m[0] == topic)
            mqtt_times.append(got - sent)
    finally:
        pub.disconnect()
        pub.loop_stop()
    return {"webhook": percentiles(http_times), "mqtt": percentiles(mqtt_times)}


def one_run(detector, out: Path, args: argparse.Namespace, seed: int) -> dict:  # noqa: ANN001
    from helpers import write_video

    from arnet.live.notify import make_sinks
    from arnet.live.scorer import SegmentScorer
    from arnet.live.sinks import NotifyOptions
    from arnet.live.sources import parse_sources
    from arnet.live.tracker import Thresholds
    from arnet.live.watch import Watcher, WatchOptions
    from arnet.live.webhook import verify
    from arnet.store import open_store

    patterns = camera_patterns(args.cameras, args.segments, seed)
    sources = []
    for i, pattern in enumerate(patterns):
        path = write_video(out / f"cam{i}.mp4", footage(pattern, seed=100 * seed + i), fps=25)
        sources.append(f"cam{i}={path}")
    committed: dict[int, float] = {}  # commit of the first row of each alert event
    commit_times: dict[tuple[int, str], float] = {}
    with Broker() as broker, Receiver() as receiver:
        sub = Subscriber(broker.port, ("arnet/#", "baseline/#"))
        store = open_store(out / "events.db")
        original = store.commit_segments

        def timed_commit(*a, **k):  # noqa: ANN002, ANN003, ANN202
            ids = original(*a, **k)
            now = time.time()
            for alert_id in ids:
                committed.setdefault(alert_id, now)
            rows = a[2] if len(a) > 2 else k.get("alert_rows", ())
            for row, alert_id in zip(rows, ids):
                commit_times.setdefault(
                    (alert_id, f"state:{row['state']}:{row['end_segment']}"), now
                )
            return ids

        store.commit_segments = timed_commit  # type: ignore[method-assign]
        sinks = make_sinks(
            [receiver.url, f"mqtt://127.0.0.1:{broker.port}/arnet"],
            SECRET,
            NotifyOptions(first_delay=0.2, max_delay=2.0, drain=60.0),
        )
        watcher = Watcher(
            SegmentScorer(detector),
            store,
            parse_sources(sources),
            Thresholds(0.5, 0.5),
            WatchOptions(quiet=True, realtime=True, batch_size=args.cameras),
            sinks,
        )
        started = time.time()
        watcher.start()
        try:
            watcher.run()
        finally:
            watcher.close()
        wall = time.time() - started
        from arnet.store.deliveries import Deliveries

        counts = Deliveries(store).counts()
        store.close()
        got = receiver.accepted()
        assert all(verify(SECRET, r["body"], r["headers"]["x-arnet-signature"]) for r in got)
        mqtt_events = [
            (json.loads(m[1]), m[3]) for m in list(sub.messages) if m[0].endswith("/events")
        ]
        base = baseline(receiver, broker.port, sub, args.baseline)
        sub.close()

    def latency(event: dict, received: float) -> float:
        key = (event["alert_id"], f"state:{event['state']}:{event['end_frame'] // 16}")
        stored = commit_times.get(key)
        if event["event"] == "opened":
            stored = committed[event["alert_id"]]
        assert stored is not None, event
        return received - stored

    hook = [(r["json"], r["time"]) for r in got]
    result = {
        "seed": seed,
        "cameras": args.cameras,
        "alerts": len(committed),
        "wall_s": round(wall, 1),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "deliveries": counts,
        "webhook_opened": percentiles([latency(e, t) for e, t in hook if e["event"] == "opened"]),
        "webhook_all": percentiles([latency(e, t) for e, t in hook]),
        "mqtt_opened": percentiles(
            [latency(e, t) for e, t in mqtt_events if e["event"] == "opened"]
        ),
        "mqtt_all": percentiles([latency(e, t) for e, t in mqtt_events]),
        "baseline": base,
        "_raw": {
            "webhook_opened": [latency(e, t) for e, t in hook if e["event"] == "opened"],
            "mqtt_opened": [latency(e, t) for e, t in mqtt_events if e["event"] == "opened"],
        },
    }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--runs", type=int, default=3, help="runs, seeds 1..N (footage and phases)")
    p.add_argument("--segments", type=int, default=24, help="segments per camera (16 frames)")
    p.add_argument("--baseline", type=int, default=200, help="round trips of each baseline")
    p.add_argument("--json", default=None, metavar="FILE")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from arnet.detection.detector import load_detector

    results = []
    with tempfile.TemporaryDirectory(prefix="arnet-notify-") as tmp:
        run = make_checkpoint(Path(tmp) / "model")
        detector = load_detector(run, device="cpu")[0]
        for seed in range(1, args.runs + 1):
            out = Path(tmp) / f"run{seed}"
            out.mkdir()
            r = one_run(detector, out, args, seed)
            results.append(r)
            print(
                f"run {seed}: {r['cameras']} cameras, {r['alerts']} alerts, {r['wall_s']} s "
                f"(load average {r['load_average_1min']} on {os.cpu_count()} CPUs), "
                f"deliveries {r['deliveries']}\n"
                f"  webhook opened {r['webhook_opened']}  all events {r['webhook_all']}\n"
                f"  mqtt    opened {r['mqtt_opened']}  all events {r['mqtt_all']}\n"
                f"  baseline (no arnet): webhook {r['baseline']['webhook']}  "
                f"mqtt {r['baseline']['mqtt']}",
                flush=True,
            )
    pooled = {
        k: percentiles([x for r in results for x in r["_raw"][k]])
        for k in ("webhook_opened", "mqtt_opened")
    }
    p95s = {
        k: [r[k]["p95_ms"] for r in results if r[k]["n"]] for k in ("webhook_opened", "mqtt_opened")
    }
    print("all runs, opened:", json.dumps(pooled))
    for k, values in p95s.items():
        if values:
            spread = statistics.pstdev(values) if len(values) > 1 else 0.0
            print(
                f"  {k} p95 per run: mean {statistics.mean(values):.2f} ± {spread:.2f} ms, "
                f"worst {max(values):.2f} ms"
            )
    if args.json:
        for r in results:
            r.pop("_raw")
        Path(args.json).write_text(json.dumps({"runs": results, "pooled": pooled}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
