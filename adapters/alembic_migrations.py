"""Schema migrations with Alembic, driven from code (no alembic.ini).

The revisions live in the ``migrations`` package, found through the import
system, so an installed or editable checkout finds them from any folder.
Upgrades hold a lock for their whole run, so two processes starting at
once (two containers, a deploy and a cron job) migrate one after the other
and the second finds nothing left to do.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy import text
from sqlalchemy.engine import Connection

from adapters.sqlalchemy_store import describe
from adapters.sqlalchemy_store import translated
from domain.ports import StorageUnavailable

log = logging.getLogger(__name__)

# Any constant works as long as every process uses the same one.
POSTGRES_LOCK_KEY = 0x7778_7061_7900_0001
MARIADB_LOCK_NAME = "wxpay_native.migrations"
MARIADB_LOCK_WAIT_S = 300
SQLITE_LOCK_WAIT_S = 300


def migrations_folder() -> Path:
    """Where the ``migrations`` package (env.py, versions/) lives."""
    # NOTE(migrations): an editable install made before migrations/ had an
    # __init__.py maps it as a namespace package, which has no single
    # folder for importlib.resources; look for env.py on its search path.
    spec = importlib.util.find_spec("migrations")
    locations = spec.submodule_search_locations if spec else None
    for location in locations or ():
        folder = Path(location)
        if (folder / "env.py").is_file():
            return folder
    raise RuntimeError("the migrations package (with env.py) is not installed")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code; ``connection`` is used."""
    config = Config()
    config.set_main_option("script_location", str(migrations_folder()))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"expected one migration head, found {heads}")
    return str(heads[0])


def current_revision(engine: Engine) -> str | None:
    """The database's revision, or None before the first migration.

    Raises:
        StorageUnavailable: the database cannot be reached.
    """
    with translated(engine.url), engine.connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    return heads[0] if heads else None


def is_at_head(engine: Engine) -> bool:
    """Tell whether the database's schema is the one this code expects.

    Raises:
        StorageUnavailable: the database cannot be reached.
    """
    return current_revision(engine) == head_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision``; a no-op when already there.

    Raises:
        StorageUnavailable: the database cannot be reached or locked.
    """
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``"base"``: empty).

    Raises:
        StorageUnavailable: the database cannot be reached or locked.
    """
    _run(engine, "downgrade", revision)


def _run(engine: Engine, direction: str, revision: str) -> None:
    with _sqlite_file_lock(engine):
        _run_locked(engine, direction, revision)


def _run_locked(engine: Engine, direction: str, revision: str) -> None:
    before = current_revision(engine)
    with (
        translated(engine.url),
        engine.connect() as connection,
        _migration_lock(connection),
        # One transaction for the whole run: on SQLite its BEGIN IMMEDIATE
        # is the lock; elsewhere DDL may commit early (MariaDB always
        # does), which the server's lock covers.
        connection.begin(),
    ):
        config = alembic_config(connection)
        if direction == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)
    after = current_revision(engine)
    log.info(
        "migrations %s database=%s from=%s to=%s",
        direction,
        describe(engine),
        before or "base",
        after or "base",
    )


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """Serialize migrations of one SQLite file across processes.

    NOTE(migrations): SQLite's own locks are not enough here: two
    processes opening a new file at once race on switching it to WAL,
    and one of them is told "database is locked" at once, busy timeout
    or not. A lock file beside the database is taken before either
    connects, as PostgreSQL's advisory lock is for the servers.
    """
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or database in ("", ":memory:"):
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        deadline = time.monotonic() + SQLITE_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StorageUnavailable(
                        f"another migration held {lock_path} for {SQLITE_LOCK_WAIT_S} s"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    name = connection.dialect.name
    if name == "postgresql":
        # TODO(migrations): pg_advisory_lock waits for ever; bound the wait
        # (lock_timeout or a pg_try_advisory_lock loop) if a stuck deploy
        # ever holds it.
        lock = text("SELECT pg_advisory_lock(:key)")
        unlock = text("SELECT pg_advisory_unlock(:key)")
        connection.execute(lock, {"key": POSTGRES_LOCK_KEY})
        connection.commit()  # a session lock outlives this transaction
        try:
            yield
        finally:
            connection.execute(unlock, {"key": POSTGRES_LOCK_KEY})
            connection.commit()
    elif name in ("mysql", "mariadb"):
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"),
            {"name": MARIADB_LOCK_NAME, "wait": MARIADB_LOCK_WAIT_S},
        ).scalar()
        connection.commit()
        if got != 1:
            raise StorageUnavailable(
                f"another migration held {MARIADB_LOCK_NAME!r} for"
                f" {MARIADB_LOCK_WAIT_S} s (database {describe(connection.engine)})"
            )
        try:
            yield
        finally:
            connection.execute(
                text("SELECT RELEASE_LOCK(:name)"), {"name": MARIADB_LOCK_NAME}
            )
            connection.commit()
    else:
        # SQLite: the lock file of _sqlite_file_lock, then the BEGIN
        # IMMEDIATE of the migration's transaction.
        yield
