"""A real PostgreSQL server for the tests, started in a temporary folder (not a fixture file
of its own: test modules import `postgres_server` from here).

PostgreSQL refuses to run as root; as root the server runs as the `postgres` system user
(via runuser), otherwise as the current user. Tests are skipped, with the reason, when the
binaries are missing or the server cannot start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    if shutil.which("runuser") is None:
        pytest.skip("PostgreSQL cannot run as root and runuser is missing")
    return ["runuser", "-u", "postgres", "--", *argv]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL (postgresql://arnet@127.0.0.1:PORT/postgres) of a throwaway server."""
    for tool in ("initdb", "pg_ctl"):
        if shutil.which(tool) is None:
            pytest.skip(f"PostgreSQL's {tool} is not on PATH")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg (the live extra) is not installed")
    folder = tempfile.mkdtemp(prefix="arnet-pg-")
    os.chmod(folder, 0o755)
    data = os.path.join(folder, "data")
    if os.geteuid() == 0:
        try:
            shutil.chown(folder, "postgres")
        except (LookupError, PermissionError):
            shutil.rmtree(folder)
            pytest.skip("running as root and there is no postgres user to run the server")
    port = _free_port()
    run = dict(capture_output=True, text=True, timeout=120)
    init = subprocess.run(
        _as_server_user(["initdb", "-D", data, "-A", "trust", "-U", "arnet", "-E", "UTF8"]), **run
    )
    if init.returncode:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr.strip().splitlines()[-1:]}")
    options = f"-p {port} -k {folder} -h 127.0.0.1 -c fsync=off -c full_page_writes=off"
    start = subprocess.run(
        _as_server_user(
            ["pg_ctl", "-D", data, "-o", options, "-l", os.path.join(folder, "log"), "-w", "start"]
        ),
        **run,
    )
    if start.returncode:
        log = open(os.path.join(folder, "log")).read() if os.path.exists(folder + "/log") else ""
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"the PostgreSQL server did not start: {log.strip()[-300:]}")
    try:
        yield f"postgresql://arnet@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_server_user(["pg_ctl", "-D", data, "-m", "immediate", "stop"]), **run)
        shutil.rmtree(folder, ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    """Create database `name` on the server (dropping an earlier one); its URL."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"
