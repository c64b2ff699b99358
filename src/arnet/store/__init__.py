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
from typing import TYPE_CHECKING

from .engine import StoreError, check_reachable, create_engine, hide, make_url, migrate

if TYPE_CHECKING:
    from .events import EventStore


def open_store(target: str | os.PathLike[str], migrate_schema: bool = True) -> EventStore:
    """Open (and create or migrate) the event store at a path or database URL.

    Args:
        target: a file path or `sqlite:///PATH` (SQLite), or `postgresql://USER:PW@HOST/DB`.
        migrate_schema: bring the schema to this package's newest migration first.

    Raises:
        StoreError: one line naming the URL (password hidden): an unsupported scheme, an
            unreachable server, a file that is not a database, a schema from a newer arnet.
    """
    from .events import EventStore

    url = make_url(target)
    engine = create_engine(url)
    check_reachable(engine)
    if migrate_schema:
        migrate(engine)
    return EventStore(engine)


def __getattr__(name: str):  # noqa: ANN202  (EventStore without importing SQLAlchemy early)
    if name == "EventStore":
        from .events import EventStore

        return EventStore
    raise AttributeError(name)


__all__ = ["EventStore", "StoreError", "hide", "open_store"]
