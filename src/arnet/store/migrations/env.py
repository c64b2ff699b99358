"""Alembic environment of the event store: runs on the connection `open_store` hands over."""

from __future__ import annotations

from alembic import context

from arnet.store.migrations_path import VERSION_TABLE
from arnet.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
