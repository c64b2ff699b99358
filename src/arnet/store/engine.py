"""Opening an event store: URL or path -> engine, connection check, schema check or migration.

Three kinds of access (`ACCESS`): `create` (a watcher: creates a new store, or migrates an
existing one to head), `write` (an existing arnet store of any known revision, written but never
created or migrated: acknowledging an alert) and `read` (the same, read only: dashboards,
`arnet alerts`). Only `create` makes a file or a table; a database of another program is
refused by every kind, and nothing is changed in it.

SQLite (a file path or `sqlite:///PATH`) runs in WAL mode with a busy timeout, so a watcher
writes while dashboards and `arnet alerts` read; `synchronous=NORMAL` keeps every committed
transaction across a crash of the process (kill -9), though not across a power cut. Readers
open the file read-only (SQLite's `mode=ro`). PostgreSQL (`postgresql://USER:PASS@HOST/DB`) is
reached through psycopg 3; many watchers may open one store at once, and the migration runs
under an advisory lock.
"""

from __future__ import annotations

import fcntl
import functools
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from ..errors import DataError
from .migrations_path import MIGRATIONS, VERSION_TABLE

BUSY_TIMEOUT_S = 30.0
# An arbitrary constant key for PostgreSQL's advisory lock held while migrating.
MIGRATION_LOCK_KEY = 0x61726E6574


ACCESS = ("create", "write", "read")
_F = TypeVar("_F", bound=Callable[..., Any])


class StoreError(DataError):
    """The event store cannot be opened or used; the message names its URL (password hidden)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or written for now (a server down, a full disk, a lock held
    too long); the same call may succeed later. The message names the store and the reason."""


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


def make_url(target: str | os.PathLike[str], access: str = "create"):  # noqa: ANN201
    """A path or URL -> a SQLAlchemy URL. Bare paths are SQLite files; `postgresql://` and
    `postgres://` use psycopg 3.

    Raises:
        StoreError: an unknown scheme, a SQLite file whose folder does not exist, a path that
            is no regular file (a device, a folder), or (`access` other than `create`) a
            SQLite file that does not exist.
    """
    if access not in ACCESS:
        raise ValueError(f"store access must be one of {ACCESS}, got {access!r}")
    sa = _require_sqlalchemy()
    text = os.fspath(target)
    try:
        if "://" not in text:  # a path: taken whole, "?" and "#" included (no URL parsing)
            url = sa.engine.URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
        else:
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
        path = Path(url.database)
        if not path.parent.is_dir():
            raise StoreError(f"{url.database}: the folder {path.parent} does not exist")
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            # SQLite would write a journal beside a device (/dev/null-journal) or fail later
            kind = "folder" if stat.S_ISDIR(mode) else "device or special file"
            raise StoreError(f"{path}: a {kind}, not an event store file")
        if mode is None and access != "create":
            # a reader never creates: a mistyped path must not become a new, empty store
            raise StoreError(f"{path}: no such event store (arnet watch --db creates it)")
    else:
        raise StoreError(
            f"{hide(url)}: unsupported database {backend!r}; use a file path, sqlite:///PATH "
            "or postgresql://USER:PASSWORD@HOST/DB"
        )
    return url


def hide(url) -> str:  # noqa: ANN001  (sqlalchemy.URL)
    """The URL as text with its password replaced by ***; a SQLite file's path as it is
    spelled on disk (not %-encoded)."""
    if url.get_backend_name() == "sqlite" and url.database:
        return f"sqlite:///{url.database}"
    return url.render_as_string(hide_password=True).replace("+psycopg", "")


def create_engine(url, access: str = "create"):  # noqa: ANN001, ANN201
    """An engine for `url` (from `make_url`) with the store's connection settings; SQLite files
    are opened read-only for `read`, and never created but for `create`."""
    sa = _require_sqlalchemy()
    if url.get_backend_name() == "sqlite":
        mode = {"create": "rwc", "write": "rw", "read": "ro"}[access]
        uri = f"file:{quote(url.database)}?mode={mode}"

        def connect() -> sqlite3.Connection:
            # pooled connections are used by one thread at a time, not always the same one
            return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)

        engine = sa.create_engine(url, creator=connect)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
            # per connection, nothing written: the WAL journal is set once, by `migrate`
            cursor = dbapi_connection.cursor()
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
    connect_args: dict[str, object] = {"connect_timeout": 10}
    if access == "read":  # the server refuses any write of a reader's transactions
        connect_args["options"] = "-c default_transaction_read_only=on"
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args, pool_size=5)


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
    """flock on the database's folder, so that processes opening a new store migrate it one at
    a time. Not on the database file itself: closing any descriptor of that file would drop
    the POSIX locks SQLite holds on it in this process, and another process could then delete
    a write-ahead log still in use."""
    fd = os.open(Path(url.database).parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _script():  # noqa: ANN202  (alembic ScriptDirectory)
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config, ScriptDirectory.from_config(config)


def _schema(conn) -> tuple[str | None, set[str]]:  # noqa: ANN001
    """The store's revision (None: no version recorded) and its tables."""
    sa = _require_sqlalchemy()
    from alembic.runtime.migration import MigrationContext

    tables = set(sa.inspect(conn).get_table_names())
    if VERSION_TABLE not in tables:
        return None, tables
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision(), tables - {VERSION_TABLE}


def _check_schema(  # noqa: ANN001  (url: sqlalchemy.URL, script: alembic ScriptDirectory)
    url, current: str | None, tables: set[str], script, new_ok: bool
) -> None:
    """Refuse a database that is no arnet store (another program's tables), was made by a newer
    arnet, or lacks tables of its revision; `new_ok`: an empty database may become one."""
    from .schema import CORE_TABLES  # SQLAlchemy: the live extra, loaded on use

    if current is None:
        if tables:
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise StoreError(
                f"{hide(url)}: not an arnet event store (it holds tables of another program: "
                f"{shown}); give a new file or an empty database"
            )
        if not new_ok:
            raise StoreError(f"{hide(url)}: not an arnet event store (an empty database)")
        return
    if current not in {s.revision for s in script.walk_revisions()}:
        raise StoreError(
            f"{hide(url)}: the event store's schema is at revision {current}, made by a newer "
            "arnet; upgrade arnet to use it"
        )
    missing = [t for t in CORE_TABLES if t not in tables]
    if missing:
        raise StoreError(
            f"{hide(url)}: a damaged event store: its table(s) {', '.join(missing)} are missing"
        )


def _unusable(url, exc) -> StoreError:  # noqa: ANN001
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    return StoreError(f"{hide(url)}: not a usable event store ({reason})")


def check_schema(engine, new_ok: bool = False) -> str | None:  # noqa: ANN001
    """Check, without changing anything, that the database is an arnet event store of a
    revision this arnet knows, with its tables; returns the revision (None: an empty database,
    accepted with `new_ok`).

    Raises:
        StoreError: naming the store: no arnet store (empty, or another program's tables),
            one of a newer arnet, or one whose tables are missing.
    """
    sa = _require_sqlalchemy()
    _, script = _script()
    try:
        with engine.connect() as conn:
            current, tables = _schema(conn)
    except sa.exc.DatabaseError as exc:
        raise _unusable(engine.url, exc) from None
    _check_schema(engine.url, current, tables, script, new_ok)
    return current


def migrate(engine) -> str:  # noqa: ANN001
    """Bring the schema to the newest migration shipped with this package (creating it in an
    empty database); returns it. A SQLite store is switched to its WAL journal once checked.

    Raises:
        StoreError: the database holds tables of another program, was migrated by a newer
            arnet (a revision unknown here), or lacks tables.
    """
    sa = _require_sqlalchemy()
    from alembic import command

    from .schema import metadata

    config, script = _script()
    head = script.get_current_head()
    postgres = engine.url.get_backend_name() == "postgresql"
    lock = _sqlite_migration_lock(engine.url) if not postgres else _null()
    try:
        with lock:
            with engine.begin() as conn:
                if postgres:
                    conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"))
                current, tables = _schema(conn)
                _check_schema(engine.url, current, tables, script, new_ok=True)
                if current != head:
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
                    tables = _schema(conn)[1]
                missing = sorted(set(metadata.tables) - tables)
                if missing:
                    raise StoreError(
                        f"{hide(engine.url)}: a damaged event store: its table(s) "
                        f"{', '.join(missing)} are missing"
                    )
            if not postgres:  # persistent, and only outside a transaction
                raw = engine.raw_connection()
                try:
                    raw.cursor().execute("PRAGMA journal_mode=WAL")
                finally:
                    raw.close()
    except sa.exc.DatabaseError as exc:
        raise _unusable(engine.url, exc) from None
    return head


# SQLite's messages of a store that may work again later (its other operational errors, such
# as a missing table, will not).
_SQLITE_TRANSIENT = (
    "database is locked",
    "database table is locked",
    "database or disk is full",
    "disk i/o error",
    "unable to open database file",
)


def store_failure(url, exc) -> StoreError:  # noqa: ANN001
    """A database error of a store operation as a StoreError naming the store (password
    hidden): StoreUnavailable when the store may work again later (a server stopped or
    unreachable, a full disk, a lock held too long), else StoreError."""
    sa = _require_sqlalchemy()
    reason = str(exc.orig if getattr(exc, "orig", None) is not None else exc).strip()
    reason = (reason.splitlines() or [type(exc).__name__])[0][:300]
    if url.get_backend_name() == "sqlite":
        transient = isinstance(exc, sa.exc.OperationalError) and reason.lower().startswith(
            _SQLITE_TRANSIENT
        )
    else:
        transient = isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)) or bool(
            getattr(exc, "connection_invalidated", False)
        )
    if transient:
        return StoreUnavailable(f"{hide(url)}: the event store is unavailable ({reason})")
    return StoreError(f"{hide(url)}: the event store failed ({reason})")


def calls_store(method: _F) -> _F:
    """A database error of an EventStore `method` as StoreUnavailable or StoreError naming
    the store."""
    sa = _require_sqlalchemy()

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sa.exc.DBAPIError as exc:
            raise store_failure(self.engine.url, exc) from exc

    return call  # type: ignore[return-value]


@contextmanager
def _null() -> Iterator[None]:
    yield
