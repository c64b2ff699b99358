"""Opening an event store: URL or path -> engine, connection check, migrations to head.

SQLite (a file path or `sqlite:///PATH`) runs in WAL mode with a busy timeout, so a watcher
writes while dashboards and `arnet alerts` read; `synchronous=NORMAL` keeps every committed
transaction across a crash of the process (kill -9), though not across a power cut.
PostgreSQL (`postgresql://USER:PASS@HOST/DB`) is reached through psycopg 3; many watchers may
open one store at once, and the migration runs under an advisory lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..data import DataError

BUSY_TIMEOUT_S = 30.0
# An arbitrary constant key for PostgreSQL's advisory lock held while migrating.
MIGRATION_LOCK_KEY = 0x61726E6574


class StoreError(DataError):
    """The event store cannot be opened or used; the message names its URL (password hidden)."""


STORE_EXTRA_HINT = 'pip install "arnet-vad[live]"'


def _require_sqlalchemy():  # noqa: ANN202  (module)
    try:
        import sqlalchemy
    except ImportError as exc:
        raise StoreError(
            f"the event store needs SQLAlchemy and Alembic, which are not installed: "
            f"{STORE_EXTRA_HINT}"
        ) from exc
    return sqlalchemy


def make_url(target: str | os.PathLike[str]):  # noqa: ANN201  (sqlalchemy.URL)
    """A path or URL -> a SQLAlchemy URL. Bare paths are SQLite files; `postgresql://` and
    `postgres://` use psycopg 3.

    Raises:
        StoreError: an unknown scheme, or a SQLite file whose folder does not exist.
    """
    sa = _require_sqlalchemy()
    text = os.fspath(target)
    if "://" not in text:
        text = "sqlite:///" + str(Path(text).expanduser().resolve())
    try:
        url = sa.engine.make_url(text)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"{text}: not a database URL or path ({exc})") from None
    backend = url.get_backend_name()
    if backend == "postgres":  # Heroku-style spelling
        url = url.set(drivername="postgresql")
        backend = "postgresql"
    if backend == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        if url.database in (None, "", ":memory:"):
            raise StoreError(
                f"{hide(url)}: an event store must be a file (a path or sqlite:///PATH), "
                "so that alerts outlive the process"
            )
        folder = Path(url.database).parent
        if not folder.is_dir():
            raise StoreError(f"{url.database}: the folder {folder} does not exist")
    else:
        raise StoreError(
            f"{hide(url)}: unsupported database {backend!r}; use a file path, sqlite:///PATH "
            "or postgresql://USER:PASSWORD@HOST/DB"
        )
    return url


def hide(url) -> str:  # noqa: ANN001  (sqlalchemy.URL)
    """The URL as text with its password replaced by ***."""
    return url.render_as_string(hide_password=True).replace("+psycopg", "")


def create_engine(url):  # noqa: ANN001, ANN201
    """An engine for `url` (from `make_url`) with the store's connection settings."""
    sa = _require_sqlalchemy()
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            cursor.close()

        return engine
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise StoreError(
            f"{hide(url)}: PostgreSQL needs psycopg 3, which is not installed: {STORE_EXTRA_HINT}"
        ) from exc
    return sa.create_engine(
        url, pool_pre_ping=True, connect_args={"connect_timeout": 10}, pool_size=5
    )


def check_reachable(engine) -> None:  # noqa: ANN001
    """Connect once; StoreError naming the URL and the reason when that fails."""
    sa = _require_sqlalchemy()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreError(f"{hide(engine.url)}: cannot reach the event store ({reason})") from None


@contextmanager
def _sqlite_migration_lock(url) -> Iterator[None]:  # noqa: ANN001
    """flock on the database file: processes opening a new store one at a time migrate it
    one at a time (SQLite's own locks are POSIX record locks, independent of flock)."""
    path = Path(url.database)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def migrate(engine) -> str:  # noqa: ANN001
    """Bring the schema to the newest migration shipped with this package; returns it.

    Raises:
        StoreError: the database was migrated by a newer arnet (a revision unknown here), or
            holds tables that are not an arnet event store.
    """
    sa = _require_sqlalchemy()
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from .migrations_path import MIGRATIONS, VERSION_TABLE

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    postgres = engine.url.get_backend_name() == "postgresql"
    lock = _sqlite_migration_lock(engine.url) if not postgres else _null()
    try:
        with lock, engine.begin() as conn:
            if postgres:
                conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"))
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            current = context.get_current_revision()
            if current == head:
                return head
            known = {s.revision for s in script.walk_revisions()}
            if current is not None and current not in known:
                raise StoreError(
                    f"{hide(engine.url)}: the event store's schema is at revision {current}, "
                    "made by a newer arnet; upgrade arnet to use it"
                )
            if current is None:
                existing = set(sa.inspect(conn).get_table_names()) - {VERSION_TABLE}
                from .schema import metadata

                clash = existing & set(metadata.tables)
                if clash:
                    raise StoreError(
                        f"{hide(engine.url)}: holds tables ({', '.join(sorted(clash))}) that "
                        "an arnet event store did not create; use another database"
                    )
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except sa.exc.DatabaseError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreError(f"{hide(engine.url)}: not a usable event store ({reason})") from None
    return head


@contextmanager
def _null() -> Iterator[None]:
    yield
