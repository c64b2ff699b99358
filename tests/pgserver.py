"""A real PostgreSQL server for the tests, started in a temporary folder (not a fixture file
of its own: test modules import `postgres_server` from here).

PostgreSQL refuses to run as root; as root the server runs as the `postgres` system user
(via runuser), otherwise as the current user. Tests are skipped, with the reason, when the
binaries are missing or the server cannot start. `PostgresServer` is one such server that a
test may also stop and start again (an outage), on the same port and data.
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


class PostgresServer:
    """A throwaway PostgreSQL server in a temporary folder (skips the test when it cannot).

    Attributes:
        url: postgresql://arnet@127.0.0.1:PORT/postgres
    """

    def __init__(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            if shutil.which(tool) is None:
                pytest.skip(f"PostgreSQL's {tool} is not on PATH")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            pytest.skip("psycopg (the live extra) is not installed")
        self.folder = tempfile.mkdtemp(prefix="arnet-pg-")
        os.chmod(self.folder, 0o755)
        self.data = os.path.join(self.folder, "data")
        if os.geteuid() == 0:
            try:
                shutil.chown(self.folder, "postgres")
            except (LookupError, PermissionError):
                shutil.rmtree(self.folder)
                pytest.skip("running as root and there is no postgres user to run the server")
        self.port = _free_port()
        init = self._run(["initdb", "-D", self.data, "-A", "trust", "-U", "arnet", "-E", "UTF8"])
        if init.returncode:
            shutil.rmtree(self.folder, ignore_errors=True)
            pytest.skip(f"initdb failed: {init.stderr.strip().splitlines()[-1:]}")
        self.url = f"postgresql://arnet@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(_as_server_user(argv), capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        """Start the server (again) and wait until it answers."""
        options = (
            f"-p {self.port} -k {self.folder} -h 127.0.0.1 -c fsync=off -c full_page_writes=off"
        )
        log = os.path.join(self.folder, "log")
        start = self._run(["pg_ctl", "-D", self.data, "-o", options, "-l", log, "-w", "start"])
        if start.returncode:
            text = open(log).read() if os.path.exists(log) else ""
            self.remove()
            pytest.skip(f"the PostgreSQL server did not start: {text.strip()[-300:]}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` ends every connection, as a server being shut down does."""
        self._run(["pg_ctl", "-D", self.data, "-m", mode, "-w", "stop"])

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL (postgresql://arnet@127.0.0.1:PORT/postgres) of a throwaway server."""
    server = PostgresServer()
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


def fresh_database(server_url: str, name: str) -> str:
    """Create database `name` on the server (dropping an earlier one); its URL."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"
