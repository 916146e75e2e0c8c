"""The ``uow_factory`` fixture: a fresh, empty store per test, per adapter.

Each parameter gives a function returning a new unit of work over the same
store, so a test can open several (one per thread, or one to write and
another to read back).
"""

import pytest

from adapters.memory import InMemoryStore
from adapters.memory import InMemoryUnitOfWork
from adapters.sqlalchemy_store import SqlAlchemyUnitOfWork
from adapters.sqlalchemy_store import create_engine_for
from tests.support.databases import BACKENDS
from tests.support.databases import database_servers  # noqa: F401
from tests.support.databases import empty_tables

ADAPTERS = ("memory", *BACKENDS)


@pytest.fixture(scope="session")
def engines(database_servers):  # noqa: F811
    """One engine per SQL backend, over a database migrated to head."""
    made = {}

    def engine_for(backend):
        if backend not in made:
            made[backend] = create_engine_for(database_servers.migrated(backend))
        return made[backend]

    yield engine_for
    for engine in made.values():
        engine.dispose()


@pytest.fixture(params=ADAPTERS)
def uow_factory(request, engines):
    if request.param == "memory":
        store = InMemoryStore()
        return lambda: InMemoryUnitOfWork(store)

    engine = engines(request.param)
    empty_tables(engine)
    return lambda: SqlAlchemyUnitOfWork(engine)
