"""Scratch databases on SQLite, PostgreSQL and MariaDB for tests.

Every server database is created fresh (``wxpay_test_<random>``) and
dropped when the test session ends. Servers are found at the addresses
below, or where WXPAY_TEST_POSTGRES_URL / WXPAY_TEST_MARIADB_URL point
(an administrator's URL: one allowed to create and drop databases).

Under ``CI=true`` an unreachable server fails the test that needs it;
elsewhere that test is skipped with the reason.

Reuse from any conftest::

    from tests.support.databases import database_servers  # noqa: F401
    from tests.support.databases import migrated_database_url  # noqa: F401

``migrated_database_url`` is parametrised over :data:`BACKENDS` and gives
the URL of a database migrated to head, shared by the session (empty it
with :func:`empty_tables`). ``database_servers.fresh(backend)`` gives an
empty, unmigrated database of its own.
"""

import os
import secrets

import pytest
from sqlalchemy import create_engine
from sqlalchemy import delete
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.engine import make_url

from adapters import alembic_migrations
from adapters import sqlalchemy_tables
from adapters.sqlalchemy_store import create_engine_for

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

BACKENDS = ("sqlite", "postgresql", "mariadb")

ADMIN_URLS = {
    "postgresql": os.environ.get(
        "WXPAY_TEST_POSTGRES_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    ),
    "mariadb": os.environ.get(
        "WXPAY_TEST_MARIADB_URL",
        "mysql+pymysql://root@127.0.0.1:3306/",
    ),
}

# A URL nothing answers at: port 9 (discard) is closed on test machines.
DEAD_URLS = {
    "sqlite": None,  # made by the test: a folder that cannot be written
    "postgresql": "postgresql+psycopg://wxpay:s3cret-pw@127.0.0.1:9/wxpay",
    "mariadb": "mysql+pymysql://wxpay:s3cret-pw@127.0.0.1:9/wxpay",
}


def unreachable(reason):
    """Skip, or fail under CI, because a database server is missing."""
    if IN_CI:
        pytest.fail(f"database server required under CI=true: {reason}")
    pytest.skip(reason)


class DatabaseServers:
    """Creates scratch databases and drops them all in :meth:`close`."""

    def __init__(self, tmp_dir):
        self._tmp_dir = tmp_dir
        self._admins: dict[str, Engine] = {}
        self._created: list[tuple[str, str]] = []
        self._down: dict[str, str] = {}

    def fresh(self, backend):
        """Return the URL of a new, empty database on ``backend``."""
        name = "wxpay_test_" + secrets.token_hex(4)
        if backend == "sqlite":
            return f"sqlite:///{self._tmp_dir / name}.sqlite3"

        admin = self._admin(backend)
        if backend == "postgresql":
            statement = f'CREATE DATABASE "{name}"'
        else:
            statement = (
                f"CREATE DATABASE `{name}`"
                " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        with admin.connect() as connection:
            connection.execute(text(statement))
        self._created.append((backend, name))
        return (
            make_url(ADMIN_URLS[backend])
            .set(database=name)
            .render_as_string(hide_password=False)
        )

    def migrated(self, backend):
        """Return the URL of a new database migrated to head."""
        url = self.fresh(backend)
        engine = create_engine_for(url)
        try:
            alembic_migrations.upgrade(engine)
        finally:
            engine.dispose()
        return url

    def close(self):
        for backend, name in reversed(self._created):
            if backend == "postgresql":
                statement = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            else:
                statement = f"DROP DATABASE IF EXISTS `{name}`"
            with self._admins[backend].connect() as connection:
                connection.execute(text(statement))
        for engine in self._admins.values():
            engine.dispose()

    def _admin(self, backend):
        if backend in self._down:
            unreachable(self._down[backend])
        if backend not in self._admins:
            engine = create_engine(
                ADMIN_URLS[backend],
                isolation_level="AUTOCOMMIT",
                connect_args={"connect_timeout": 3},
            )
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            except Exception as error:
                engine.dispose()
                where = make_url(ADMIN_URLS[backend]).render_as_string(
                    hide_password=True
                )
                self._down[backend] = f"{backend} at {where}: {error}"
                unreachable(self._down[backend])
            self._admins[backend] = engine
        return self._admins[backend]


def empty_tables(engine):
    """Delete every row of the service's tables (not alembic_version)."""
    with engine.begin() as connection:
        for table in reversed(sqlalchemy_tables.metadata.sorted_tables):
            connection.execute(delete(table))


@pytest.fixture(scope="session")
def database_servers(tmp_path_factory):
    """The session's :class:`DatabaseServers`; drops its databases at exit."""
    servers = DatabaseServers(tmp_path_factory.mktemp("databases"))
    yield servers
    servers.close()


@pytest.fixture(scope="session", params=BACKENDS)
def migrated_database_url(request, database_servers):
    """A database migrated to head on each backend, one per session."""
    return database_servers.migrated(request.param)
