"""`arnet serve` as a user runs it: options checked before anything listens, then a real
server process answering on its port and stopping on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed")
pytest.importorskip("sqlalchemy", reason="the live extra is not installed")

import httpx  # noqa: E402
from websupport import CameraFeed, free_port  # noqa: E402

import arnet  # noqa: E402
from arnet.cli import main  # noqa: E402
from arnet.store import open_store  # noqa: E402

TOKEN = "token-of-the-serve-tests"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "events.db"
    with open_store(path) as store:
        CameraFeed(store, "gate", burst=3, burst_length=2).write(8)
    return path


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_bad_options_exit_2_naming_them(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "--host" in _error(capsys, ["--db", str(db), "--host", "0.0.0.0"])
    assert "--host" in _error(capsys, ["--db", str(db), "--host", "192.168.1.20"])
    missing = tmp_path / "nope.txt"
    assert str(missing) in _error(capsys, ["--db", str(db), "--token-file", str(missing)])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert str(empty) in _error(capsys, ["--db", str(db), "--token-file", str(empty)])
    assert "--token" in _error(capsys, ["--db", str(db), "--token", "short"])
    assert "--port" in _error(capsys, ["--db", str(db), "--port", "70000"])
    for poll in ("nan", "inf", "0", "0.0001"):  # a stream that cannot wait, or never waits
        assert f"--poll {float(poll)}" in _error(capsys, ["--db", str(db), "--poll", poll])
    assert "--runs" in _error(capsys, ["--db", str(db), "--runs", str(tmp_path / "no-runs")])
    accented = tmp_path / "accented.txt"
    accented.write_text("un-jeton-très-secret-pour-les-tests\n")
    line = _error(capsys, ["--db", str(db), "--token-file", str(accented)])
    assert str(accented) in line and "visible ASCII" in line
    gone = tmp_path / "typo.db"
    assert str(gone) in _error(capsys, ["--db", str(gone)])
    assert not gone.exists()  # nothing created by a mistyped path
    assert "--db" in _error(capsys, ["--db", "mysql://u@h/d"])


def _start(argv: list[str], tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    src = Path(arnet.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "arnet", "serve", *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, log


def _wait_up(url: str, process: subprocess.Popen, log: Path, **kwargs: object) -> httpx.Response:
    deadline = time.monotonic() + 120
    while True:
        try:
            return httpx.get(url, timeout=5, **kwargs)
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"arnet serve did not come up: {log.read_text()}") from None
            time.sleep(0.2)


def _stop(process: subprocess.Popen) -> int:
    """Press Ctrl-C; the exit status (130, as every arnet command that is interrupted)."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()


def test_serves_on_loopback_and_stops_on_ctrl_c(db: Path, tmp_path: Path) -> None:
    port = free_port()
    process, log = _start(["--db", str(db), "--port", str(port), "--poll", "0.2"], tmp_path)
    try:
        r = _wait_up(f"http://127.0.0.1:{port}/api/cameras", process, log)
        assert [c["name"] for c in r.json()] == ["gate"]
        assert (
            httpx.get(f"http://127.0.0.1:{port}/").headers["content-type"].startswith("text/html")
        )
        # A live stream is open while Ctrl-C arrives: the server still stops promptly.
        with httpx.stream("GET", f"http://127.0.0.1:{port}/api/events", timeout=30) as stream:
            next(stream.iter_lines())
            assert _stop(process) == 130
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert "http://127.0.0.1:" in text
    assert "Traceback" not in text and "ERROR" not in text  # the open stream ended cleanly


def test_beyond_loopback_every_request_needs_the_token(db: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    argv = ["--db", str(db), "--host", "0.0.0.0", "--port", str(port), "--token-file"]
    process, log = _start([*argv, str(token_file)], tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        assert _wait_up(url + "/api/alerts", process, log).status_code == 401
        assert httpx.get(url + "/").status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(url + "/api/alerts", headers=bearer).json()["total"] == 1
        login = httpx.get(url + "/?token=" + TOKEN)
        assert login.status_code == 303 and "arnet_token=" in login.headers["set-cookie"]
        assert _stop(process) == 130
    finally:
        if process.poll() is None:
            process.kill()
