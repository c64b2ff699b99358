"""Where the store's Alembic migrations live (package data) and its version table's name."""

from pathlib import Path

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "arnet_store_version"
