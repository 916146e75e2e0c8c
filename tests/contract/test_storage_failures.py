"""A database that cannot serve raises StorageUnavailable, never a driver
error, and never shows the URL's password."""

import sqlite3

import pytest

from adapters import sqlalchemy_store
from adapters.sqlalchemy_store import SqlAlchemyUnitOfWork
from adapters.sqlalchemy_store import create_engine_for
from adapters.sqlalchemy_store import ping
from domain.model import Product
from domain.money import Fen
from domain.ports import StorageUnavailable
from tests.support.databases import BACKENDS
from tests.support.databases import DEAD_URLS


@pytest.fixture
def engine_at():
    made = []

    def make(url):
        made.append(create_engine_for(url))
        return made[-1]

    yield make
    for engine in made:
        engine.dispose()


def read_products(engine):
    with SqlAlchemyUnitOfWork(engine) as uow:
        return uow.products.list()


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_a_server_that_does_not_answer_is_storage_unavailable(backend, engine_at):
    engine = engine_at(DEAD_URLS[backend])

    with pytest.raises(StorageUnavailable) as raised:
        read_products(engine)

    assert "s3cret-pw" not in str(raised.value)
    assert "127.0.0.1:9" in str(raised.value)


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_ping_says_a_dead_server_is_unavailable(backend, engine_at):
    engine = engine_at(DEAD_URLS[backend])

    with pytest.raises(StorageUnavailable) as raised:
        ping(engine)

    assert "s3cret-pw" not in str(raised.value)


def test_a_removed_sqlite_folder_is_storage_unavailable(tmp_path, engine_at):
    folder = tmp_path / "gone"
    engine = engine_at(f"sqlite:///{folder}/wxpay.sqlite3")
    assert folder.is_dir()
    folder.rmdir()

    with pytest.raises(StorageUnavailable):
        read_products(engine)


def test_a_locked_sqlite_database_is_storage_unavailable(
    tmp_path, engine_at, monkeypatch
):
    monkeypatch.setattr(sqlalchemy_store, "SQLITE_BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "wxpay.sqlite3"
    engine = engine_at(f"sqlite:///{path}")
    ping(engine)  # creates the file in WAL mode
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageUnavailable) as raised:
            read_products(engine)
    finally:
        holder.close()

    assert "locked" in str(raised.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unmigrated_database_is_storage_unavailable(
    backend, database_servers, engine_at
):
    engine = engine_at(database_servers.fresh(backend))

    with (
        pytest.raises(StorageUnavailable) as raised,
        SqlAlchemyUnitOfWork(engine) as uow,
    ):
        uow.products.save(Product("P001", "Coffee", Fen(100)))
        uow.commit()

    assert "products" in str(raised.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ping_passes_on_a_live_database(backend, database_servers, engine_at):
    engine = engine_at(database_servers.fresh(backend))

    ping(engine)
