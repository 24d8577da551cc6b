"""Schema migrations (Alembic), run by `pipeline provision` and at test set-up.

The revisions live in pipeline/store/migrations/versions; the first one is the
schema as it was first deployed with `create_all`. A database made by
`create_all` before migrations existed has every table but no version row: it
is stamped at that first revision, then upgraded like any other.

Two processes upgrading at once are serialised: PostgreSQL by an advisory
lock, SQLite by its write lock (the engine begins every write transaction
IMMEDIATE).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

__all__ = ["FIRST_REVISION", "UPGRADE_LOCK_ID", "current_revision", "head_revision", "upgrade"]

FIRST_REVISION = "0001"
MIGRATIONS = Path(__file__).with_name("migrations")
UPGRADE_LOCK_ID = 0x0D0E_0001  # pg_advisory_xact_lock key of the schema upgrade


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (idempotent)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # A second upgrader waits for the first however long it takes, and a
            # migration's statements may outlast the minute a step's may (db.py);
            # its DDL keeps the session's lock timeout, so it never queues every
            # worker behind a lock it cannot get.
            conn.execute(text("SET LOCAL statement_timeout = 0"))
            conn.execute(text("SET LOCAL lock_timeout = 0"))
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK_ID})
            conn.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
        config = _config(conn)
        tables = set(inspect(conn).get_table_names())
        if "orders" in tables and "alembic_version" not in tables:
            command.stamp(config, FIRST_REVISION)  # made by create_all before migrations
        command.upgrade(config, revision)
