"""The event store of `arnet watch`: cameras, segment scores, alerts, acknowledgements.

```python
from arnet.store import open_store

store = open_store("events.db")                     # or "postgresql://user:pw@host/db"
page, total = store.alerts(camera="gate", acknowledged=False, limit=20)
store.acknowledge(page[0]["id"], "a bicycle on the walkway", by="ana")
```

SQLite by default (a file; WAL, busy timeout), PostgreSQL for many watchers on many
machines. The schema is versioned with Alembic; the migrations ship inside this package and
run when a store is opened. SQLAlchemy and Alembic are the `live` extra.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .engine import (
    ACCESS,
    StoreError,
    StoreUnavailable,
    check_reachable,
    check_schema,
    create_engine,
    hide,
    make_url,
    migrate,
)

if TYPE_CHECKING:
    from .events import EventStore


def open_store(target: str | os.PathLike[str], access: str = "create") -> EventStore:
    """Open the event store at a path or database URL.

    Args:
        target: a file path or `sqlite:///PATH` (SQLite), or `postgresql://USER:PW@HOST/DB`.
        access: `create` (a new store is made, an existing one migrated to this package's
            newest schema: what a watcher does), `write` (an existing store, written as it
            is: acknowledgements) or `read` (an existing store, opened read-only). Only
            `create` makes a file or a table.

    Raises:
        StoreError: one line naming the URL (password hidden): an unsupported scheme, an
            unreachable server, a missing file (but for `create`), a file or database that is
            not an arnet store, a schema from a newer arnet.
    """
    from .events import EventStore

    url = make_url(target, access)
    engine = create_engine(url, access)
    try:
        check_reachable(engine)
        if access == "create":
            migrate(engine)
        else:
            check_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return EventStore(engine)


def check_store(target: str | os.PathLike[str]) -> None:
    """Check, creating and changing nothing, that `open_store(target)` can open a store there:
    a SQLite file that does not exist yet (in an existing folder), an empty database, or an
    arnet store of a known revision. What a watcher checks before loading its model.

    Raises:
        StoreError: as `open_store`.
    """
    url = make_url(target, "create")
    if url.get_backend_name() == "sqlite":
        path = Path(url.database)
        if not path.exists() or path.stat().st_size == 0:
            return  # a new store: made once the watcher is ready to write it
    engine = create_engine(url, "read")
    try:
        check_reachable(engine)
        check_schema(engine, new_ok=True)
    finally:
        engine.dispose()


def __getattr__(name: str):  # noqa: ANN202  (EventStore without importing SQLAlchemy early)
    if name == "EventStore":
        from .events import EventStore

        return EventStore
    raise AttributeError(name)


__all__ = [
    "ACCESS",
    "EventStore",
    "StoreError",
    "StoreUnavailable",
    "check_store",
    "hide",
    "open_store",
]
