"""The dashboard's JSON API through FastAPI's test client, on a real SQLite event store filled
as a watcher fills it and on run folders of real (short) training runs."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed")
pytest.importorskip("sqlalchemy", reason="the live extra is not installed")

from fastapi.testclient import TestClient  # noqa: E402
from websupport import FOOTAGE, XSS, CameraFeed, serving, shared_runs, watch_kit  # noqa: E402

from arnet.store import open_store  # noqa: E402
from arnet.web.app import create_app  # noqa: E402

LOCAL = "http://127.0.0.1"
T0 = 1_700_000_000.0  # the feeds' first segment time (2023-11-14 22:13:20 UTC)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    path = tmp_path_factory.mktemp("store") / "events.db"
    with open_store(path) as s:
        gate = CameraFeed(s, "gate", burst=30, burst_length=8, start_time=T0)
        gate.write(50)  # the burst is over: one closed alert
        yard = CameraFeed(s, "yard", burst=10, burst_length=100, start_time=T0 + 3600)
        yard.write(25)  # still above the threshold: one open alert
        evil = CameraFeed(s, XSS, burst=5, burst_length=3, start_time=T0 + 7200)
        evil.write(12)
        yield s


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A store filled by `arnet watch` of a replayed video file."""
    from arnet.cli import main

    run, video = watch_kit(tmp_path_factory)
    db = tmp_path_factory.mktemp("watched") / "events.db"
    assert main(["watch", f"gate={video}", "--checkpoint", str(run), "--db", str(db)]) == 0
    with open_store(db) as s:
        yield s


@pytest.fixture(scope="module")
def client(store, runs: Path) -> TestClient:  # noqa: ANN001
    return TestClient(create_app(store, runs, poll_seconds=0.1), base_url=LOCAL)


# ---------------------------------------------------------------------- cameras and alerts


def test_a_watched_video_seen_through_the_api(watched) -> None:  # noqa: ANN001
    from PIL import Image

    client = TestClient(create_app(watched, None), base_url=LOCAL)
    (camera,) = client.get("/api/cameras").json()
    assert (camera["name"], camera["state"]) == ("gate", "stopped")  # the file ended
    scores = client.get("/api/scores", params={"camera": "gate"}).json()
    assert [s["segment"] for s in scores] == list(range(len(FOOTAGE)))
    threshold = camera["start_threshold"]
    above = [s["segment"] for s in scores if s["score"] >= threshold]
    anomalous = [i for i, c in enumerate(FOOTAGE) if c == "X"]
    assert above == anomalous  # the bright square, and nothing else, crosses the threshold

    page = client.get("/api/alerts").json()
    assert page["total"] == 1
    (alert,) = page["alerts"]
    assert (alert["start_segment"], alert["end_segment"]) == (anomalous[0], anomalous[-1])
    assert alert["state"] == "closed" and alert["has_image"]
    detail = client.get(f"/api/alerts/{alert['id']}").json()
    assert [s["segment"] for s in detail["segments"]] == anomalous
    image = client.get(f"/api/alerts/{alert['id']}/image")
    assert Image.open(io.BytesIO(image.content)).size == (32, 32)  # the peak frame itself

    r = client.post(f"/api/alerts/{alert['id']}/acknowledge", json={"note": "square, seen"})
    assert r.status_code == 200
    assert watched.alerts(acknowledged=True)[1] == 1


def test_cameras_list_every_camera_with_state_and_threshold(client: TestClient) -> None:
    cameras = {c["name"]: c for c in client.get("/api/cameras").json()}
    assert set(cameras) == {"gate", "yard", XSS}
    assert cameras["gate"]["state"] == "streaming"
    assert cameras["gate"]["start_threshold"] == pytest.approx(0.6)
    assert cameras["gate"]["next_segment"] == 50
    assert cameras["yard"]["open_alert_id"] is not None
    assert cameras["gate"]["open_alert_id"] is None


def test_scores_newest_window_and_since(client: TestClient) -> None:
    rows = client.get("/api/scores", params={"camera": "gate", "limit": 10}).json()
    assert [r["segment"] for r in rows] == list(range(40, 50))
    newer = client.get("/api/scores", params={"camera": "gate", "since_segment": 45}).json()
    assert [r["segment"] for r in newer] == [46, 47, 48, 49]
    assert client.get("/api/scores", params={"camera": "nobody"}).json() == []


def test_alerts_filters_paging_newest_first(client: TestClient) -> None:
    page = client.get("/api/alerts").json()
    assert page["total"] == 3
    starts = [a["start_time"] for a in page["alerts"]]
    assert starts == sorted(starts, reverse=True)
    assert [a["camera"] for a in page["alerts"]] == [XSS, "yard", "gate"]

    def names(**params: object) -> list[str]:
        return [a["camera"] for a in client.get("/api/alerts", params=params).json()["alerts"]]

    assert names(camera="gate") == ["gate"]
    assert names(state="open") == ["yard"]
    assert names(state="closed") == [XSS, "gate"]
    # Times as epoch seconds or ISO 8601 (UTC when no zone is given).
    assert names(since=T0 + 3000) == [XSS, "yard"]
    assert names(until="2023-11-14T22:43:20") == ["gate"]
    assert names(since="2023-11-14T22:43:20+00:00", until=T0 + 5000) == ["yard"]
    second = client.get("/api/alerts", params={"limit": 1, "offset": 1}).json()
    assert second["total"] == 3 and [a["camera"] for a in second["alerts"]] == ["yard"]


def test_bad_filters_are_refused_by_name(client: TestClient) -> None:
    r = client.get("/api/alerts", params={"since": "yesterday"})
    assert r.status_code == 400 and "since" in r.json()["detail"]
    assert client.get("/api/alerts", params={"state": "burning"}).status_code == 422
    assert client.get("/api/alerts", params={"limit": 0}).status_code == 422
    assert client.get("/api/alerts", params={"since": "nan"}).status_code == 400  # no time


def test_alert_detail_image_and_acknowledgement(client: TestClient, store) -> None:  # noqa: ANN001
    (gate,) = client.get("/api/alerts", params={"camera": "gate"}).json()["alerts"]
    detail = client.get(f"/api/alerts/{gate['id']}").json()
    assert (detail["start_segment"], detail["end_segment"]) == (30, 37)
    assert [s["segment"] for s in detail["segments"]] == list(range(30, 38))
    # The curve around it: as long again before and after.
    assert [s["segment"] for s in detail["context"]] == list(range(22, 46))
    assert detail["acknowledgements"] == [] and detail["acknowledged"] is False

    image = client.get(f"/api/alerts/{gate['id']}/image")
    assert image.headers["content-type"] == "image/jpeg"
    assert image.content[:3] == b"\xff\xd8\xff"  # a JPEG's start-of-image marker

    r = client.post(
        f"/api/alerts/{gate['id']}/acknowledge", json={"note": "a cart on the path", "by": "ana"}
    )
    assert r.status_code == 200, r.text
    ack = r.json()
    assert ack["note"] == "a cart on the path" and ack["by"] == "ana" and ack["time"] > T0
    stored = store.alert(gate["id"])["acknowledgements"]
    assert [(a["note"], a["by"]) for a in stored] == [("a cart on the path", "ana")]
    unacked = client.get("/api/alerts", params={"acknowledged": False}).json()
    assert gate["id"] not in [a["id"] for a in unacked["alerts"]]


def test_unknown_alert_and_non_json_acknowledgement(client: TestClient) -> None:
    assert client.get("/api/alerts/999999").status_code == 404
    assert client.get("/api/alerts/999999/image").status_code == 404
    assert client.post("/api/alerts/999999/acknowledge", json={"note": "x"}).status_code == 404
    (first,) = client.get("/api/alerts", params={"limit": 1}).json()["alerts"]
    before = client.get(f"/api/alerts/{first['id']}").json()["acknowledgements"]
    # A cross-site form can send text/plain or form bodies without asking: refused, and
    # nothing is stored.
    for kind in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]:
        r = client.post(
            f"/api/alerts/{first['id']}/acknowledge",
            content='{"note": "forged"}',
            headers={"Content-Type": kind},
        )
        assert r.status_code == 415, kind
    assert client.get(f"/api/alerts/{first['id']}").json()["acknowledgements"] == before


def test_event_stream_sends_cameras_scores_alerts_then_new_scores(tmp_path: Path) -> None:
    import httpx

    store = open_store(tmp_path / "events.db")
    feed = CameraFeed(store, "stream-test", burst=2)
    feed.write(5)
    events: list[tuple[str, object]] = []
    with serving(create_app(store, None, poll_seconds=0.1)) as base:
        with httpx.stream("GET", base + "/api/events", timeout=30) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            name = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
                    mine = [d for n, d in events if n == "scores" and d["camera"] == "stream-test"]
                    if len(mine) == 1 and feed.next == 5:
                        feed.write(3)  # arrives while the stream is open
                    if len(mine) == 2:
                        break
    kinds = [n for n, _ in events]
    assert kinds[0] == "cameras" and "alerts" in kinds
    mine = [d["scores"] for n, d in events if n == "scores" and d["camera"] == "stream-test"]
    assert [r["segment"] for r in mine[0]] == [0, 1, 2, 3, 4]
    assert [r["segment"] for r in mine[1]] == [5, 6, 7]
    alerts = [d for n, d in events if n == "alerts"]
    assert alerts[0]["total"] == 1 and alerts[0]["alerts"][0]["camera"] == "stream-test"
    store.close()


def test_the_dashboard_waits_out_a_stopped_postgresql_server() -> None:
    import httpx
    from pgserver import PostgresServer, fresh_database

    server = PostgresServer()
    server.start()
    try:
        store = open_store(fresh_database(server.url, "dashboard"))
        feed = CameraFeed(store, "gate", burst=2)
        feed.write(3)
        app = create_app(store, None, poll_seconds=0.1)
        with serving(app) as base, httpx.stream("GET", base + "/api/events", timeout=60) as live:
            seen: list[str] = []
            stopped = restarted = False
            for line in live.iter_lines():
                seen.append(line)
                if line == "event: cameras" and not stopped:
                    server.stop()  # the store goes away while the page is open
                    stopped = True
                    down = httpx.get(base + "/api/alerts", timeout=60)
                    assert down.status_code == 503 and "unavailable" in down.text, down.text
                elif line.startswith(": ") and "unavailable" in line and not restarted:
                    server.start()
                    restarted = True
                    feed.write(2)  # arrives once it is back
                elif line.startswith("data: ") and '"segment":4' in line:
                    break
        assert any(x.startswith(": ") and "unavailable" in x for x in seen)
        store.close()
    finally:
        server.remove()


# ---------------------------------------------------------------------- runs


def test_runs_list_and_detail(client: TestClient, runs: Path) -> None:
    listed = {r["name"]: r for r in client.get("/api/runs").json()}
    assert set(listed) == {"arnet", "sweep/naive"}
    metrics = json.loads((runs / "arnet" / "metrics.json").read_text())
    assert listed["arnet"]["metrics"]["auc"] == pytest.approx(metrics["auc"])
    assert listed["arnet"]["iteration"] == 10 and listed["arnet"]["report"] is True

    detail = client.get("/api/run", params={"name": "sweep/naive"}).json()
    assert detail["config"]["topk_divisor"] == 1
    assert [e["iteration"] for e in detail["evaluations"]] == [5, 10]
    assert [r["iteration"] for r in detail["losses"]] == [2, 4, 6, 8, 10]
    with (runs / "sweep" / "naive" / "per_video.csv").open() as f:
        assert [v["name"] for v in detail["videos"]] == [row["name"] for row in csv.DictReader(f)]
    assert sorted(detail["scored"]) == sorted(np.load(runs / "sweep/naive/scores.npz").files)


def test_video_scores_with_ground_truth_spans(client: TestClient, runs: Path) -> None:
    metrics = json.loads((runs / "arnet" / "metrics.json").read_text())
    anomalous = [v for v in metrics["per_video"] if v["label"] == 1]
    assert anomalous
    for video in anomalous[:3]:
        v = client.get("/api/run/video", params={"name": "arnet", "video": video["name"]}).json()
        assert v["ground_truth_error"] is None
        saved = np.load(runs / "arnet" / "scores.npz")[video["name"]]
        np.testing.assert_allclose(v["scores"], saved, rtol=1e-6)
        frames = len(saved) * v["frames_per_segment"]
        # The shaded frames are exactly the anomalous frames the evaluation counted.
        covered = sum(min(b, frames) - a for a, b in v["anomalous_spans"] if a < frames)
        assert covered == video["anomalous_frames"] > 0
    normal = next(v for v in metrics["per_video"] if v["label"] == 0)
    v = client.get("/api/run/video", params={"name": "arnet", "video": normal["name"]}).json()
    assert v["anomalous_spans"] == []


def test_video_plot_without_its_dataset_still_has_scores(runs: Path, tmp_path: Path) -> None:
    moved = tmp_path / "runs" / "moved"
    shutil.copytree(runs / "arnet", moved, ignore=shutil.ignore_patterns("checkpoints"))
    config = json.loads((moved / "config.json").read_text())
    config["data"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(config))
    client = TestClient(create_app(None, tmp_path / "runs"), base_url=LOCAL)
    video = np.load(moved / "scores.npz").files[0]
    v = client.get("/api/run/video", params={"name": "moved", "video": video}).json()
    assert v["anomalous_spans"] is None and "gone" in v["ground_truth_error"]
    assert len(v["scores"]) > 0


def test_run_names_cannot_leave_the_runs_folder(runs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(runs / "arnet", outside, ignore=shutil.ignore_patterns("checkpoints"))
    root = tmp_path / "root"
    shutil.copytree(runs / "arnet", root / "inside", ignore=shutil.ignore_patterns("checkpoints"))
    os.symlink(outside, root / "link")  # a link inside pointing out: refused as well
    client = TestClient(create_app(None, root), base_url=LOCAL)
    assert client.get("/api/run", params={"name": "inside"}).status_code == 200
    names = ["../outside", str(outside), "inside/../../outside", "link", "", ".", "inside/plots"]
    for name in names:
        assert client.get("/api/run", params={"name": name}).status_code == 404, name
        assert client.get("/api/run/video", params={"name": name, "video": "x"}).status_code == 404
    assert [r["name"] for r in client.get("/api/runs").json()] == ["inside"]
    assert client.get("/files/inside/report.html").status_code == 200
    for path in [
        "/files/%2e%2e/outside/report.html",
        "/files/..%2Foutside%2Freport.html",
        "/files/link/report.html",
        "/files/inside/config.json",
        "/files/inside/checkpoints/last.pt",
        "/files/inside/../../outside/report.html",
    ]:
        assert client.get(path).status_code == 404, path


def test_static_report_is_served_with_its_plots(client: TestClient, runs: Path) -> None:
    r = client.get("/files/arnet/report.html")
    assert r.status_code == 200 and "<h1>arnet report" in r.text
    links = re.findall(r"(?:href|src)='([^']+)'", r.text)
    assert any(link.startswith("plots/") for link in links)
    for link in links:
        image = client.get("/files/arnet/" + link)
        assert image.status_code == 200 and image.content[:4] == b"\x89PNG", link
    # The report stays a plain file: it still opens without the server.
    assert (runs / "arnet" / "report.html").read_text() == r.text


# ---------------------------------------------------------------------- pages, docs, safety


def test_pages_use_only_their_own_files(client: TestClient) -> None:
    for path in ["/", "/alerts", "/alerts/1", "/runs", "/runs/view?run=arnet", "/api"]:
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert not re.search(r"(src|href)=\"(https?:)?//", r.text), path
        for asset in re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", r.text):
            assert client.get(asset).status_code == 200, asset
        assert "<script>" not in r.text  # no inline script: the policy would block it


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in [
        "/api/cameras",
        "/api/scores",
        "/api/alerts",
        "/api/alerts/{alert_id}",
        "/api/alerts/{alert_id}/image",
        "/api/alerts/{alert_id}/acknowledge",
        "/api/events",
        "/api/runs",
        "/api/run",
        "/api/run/video",
    ]:
        assert path in spec["paths"], path
        for op in spec["paths"][path].values():
            assert op.get("summary"), path
    assert client.get("/docs").status_code == 404  # its scripts would come from a CDN


def test_token_is_required_by_header_or_login_cookie(store) -> None:  # noqa: ANN001
    token = "s3cret-token-for-tests"
    app = create_app(store, None, token=token)
    client = TestClient(app, base_url="http://10.0.0.5")  # any host name once a token guards it
    for path in ["/", "/api/cameras", "/api/alerts", "/openapi.json", "/static/live.js"]:
        assert client.get(path).status_code == 401, path
    assert client.post("/api/alerts/1/acknowledge", json={"note": "x"}).status_code == 401
    assert client.get("/api/cameras", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert (
        client.get("/api/cameras", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )
    assert client.get("/?token=wrong", follow_redirects=False).status_code == 401
    login = client.get("/alerts?state=open&token=" + token, follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/alerts?state=open"
    assert "httponly" in login.headers["set-cookie"].lower()
    assert client.get("/api/cameras").status_code == 200  # the cookie is kept
    client.cookies.clear()
    assert client.get("/api/cameras").status_code == 401


def test_a_token_of_other_characters_is_a_401_never_a_500(store) -> None:  # noqa: ANN001
    token = "s3cret-token-for-tests"
    client = TestClient(create_app(store, None, token=token), base_url="http://10.0.0.5")
    for given in ("s3cret-tökén-for-tests", "ü" * 22, token + "é", "\u2603"):
        raw = given.encode()  # as a client sends it: UTF-8 bytes in the header and cookie
        assert (
            client.get("/api/cameras", headers={"Authorization": b"Bearer " + raw}).status_code
            == 401
        )
        assert (
            client.get("/api/cameras", headers={"Cookie": b"arnet_token=" + raw}).status_code == 401
        )
        assert client.get("/api/cameras", params={"token": given}).status_code == 401
    assert (
        client.get("/api/cameras", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )
    # a token the server could not compare, or carry in a cookie, is refused when it starts
    for bad in ("päss-wörd-of-the-tests", "a token with spaces in it", "short"):
        with pytest.raises(ValueError, match="token"):
            create_app(store, None, token=bad)


def test_ids_and_pages_beyond_any_database_integer_are_not_found(client: TestClient) -> None:
    huge = 10**20
    for path in (f"/api/alerts/{huge}", f"/api/alerts/{huge}/image", f"/api/alerts/-{huge}"):
        r = client.get(path)
        assert r.status_code == 404, (path, r.status_code)
    r = client.post(f"/api/alerts/{huge}/acknowledge", json={"note": "x"})
    assert r.status_code == 404
    page = client.get("/api/alerts", params={"offset": huge, "limit": 5})
    assert page.status_code == 200 and page.json()["alerts"] == []
    scores = client.get("/api/scores", params={"camera": "gate", "since_segment": huge})
    assert scores.status_code == 200 and scores.json() == []
    r = client.get("/api/scores", params={"camera": "gate", "since_segment": -huge})
    assert r.status_code == 200 and r.json()


def test_without_token_only_loopback_host_names_are_answered(store) -> None:  # noqa: ANN001
    app = create_app(store, None)
    assert TestClient(app, base_url="http://127.0.0.1:8000").get("/api/cameras").status_code == 200
    assert TestClient(app, base_url="http://localhost:8000").get("/api/cameras").status_code == 200
    # A page of another site whose name now points at 127.0.0.1 (DNS rebinding) is refused.
    rebound = TestClient(app, base_url="http://attacker.example:8000")
    assert rebound.get("/api/cameras").status_code == 400
