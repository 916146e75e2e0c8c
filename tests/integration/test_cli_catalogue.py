"""``wxpay product add`` and ``wxpay product list`` on a SQLite file."""

import argparse

import pytest

from adapters import alembic_migrations
from adapters.sqlalchemy_store import SqlAlchemyUnitOfWork
from adapters.sqlalchemy_store import create_engine_for
from domain.model import Product
from domain.money import Fen
from entrypoints.commands import catalogue
from entrypoints.commands import database

MERCHANT_VARIABLES = ("WXPAY_APPID", "WXPAY_MCH_ID", "WXPAY_API_KEY", "WXPAY_CONFIG")


def wxpay(*argv):
    """Run a ``wxpay`` sub-command in this process, through its parser."""
    parser = argparse.ArgumentParser(prog="wxpay")
    subparsers = parser.add_subparsers(dest="command", required=True)
    database.register(subparsers)
    catalogue.register(subparsers)
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture
def url(tmp_path, monkeypatch):
    for name in MERCHANT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path}/shop/wxpay.sqlite3"
    monkeypatch.setenv("WXPAY_DATABASE_URL", url)
    return url


@pytest.fixture
def engine(url):
    made = create_engine_for(url)
    yield made
    made.dispose()


def catalogue_in(engine):
    with SqlAlchemyUnitOfWork(engine) as uow:
        return uow.products.list()


def test_product_add_stores_a_product_without_merchant_settings(url, engine):
    assert wxpay("db", "upgrade") == 0

    status = wxpay("product", "add", "P001", "咖啡 Coffee", "1200")

    assert status == 0
    assert catalogue_in(engine) == [Product("P001", "咖啡 Coffee", Fen(1200))]


def test_product_add_again_changes_the_product(url, engine):
    wxpay("db", "upgrade")
    wxpay("product", "add", "P001", "Coffee", "1200")

    status = wxpay("product", "add", "P001", "Tea", "300", "--unavailable")

    assert status == 0
    assert catalogue_in(engine) == [Product("P001", "Tea", Fen(300), available=False)]


@pytest.mark.parametrize("price", ["1.5", "-1", "0", "abc", "012", "+5", "１"])
def test_product_add_refuses_a_price_that_is_not_positive_fen(
    url, engine, price, capsys
):
    wxpay("db", "upgrade")

    status = wxpay("product", "add", "P001", "Coffee", price)

    assert status == 2
    assert "fen" in capsys.readouterr().err
    assert catalogue_in(engine) == []


def test_product_add_refuses_a_bad_id(url, engine, capsys):
    wxpay("db", "upgrade")

    status = wxpay("product", "add", "P 001", "Coffee", "100")

    assert status == 2
    assert "product id" in capsys.readouterr().err


def test_product_commands_ask_for_db_upgrade_first(url, capsys):
    status = wxpay("product", "list")

    assert status == 1
    assert "wxpay db upgrade" in capsys.readouterr().err


def test_product_list_prints_one_tab_separated_line_per_product(url, capsys):
    wxpay("db", "upgrade")
    wxpay("product", "add", "P002", "Tea", "300", "--unavailable")
    wxpay("product", "add", "P001", "Coffee", "1200")
    capsys.readouterr()

    status = wxpay("product", "list")

    assert status == 0
    assert capsys.readouterr().out.splitlines() == [
        "P001\t1200\tavailable\tCoffee",
        "P002\t300\tunavailable\tTea",
    ]


def test_product_list_of_an_unreachable_database_exits_1(monkeypatch, capsys):
    monkeypatch.setenv(
        "WXPAY_DATABASE_URL", "postgresql+psycopg://u:s3cret-pw@127.0.0.1:9/x"
    )

    status = wxpay("product", "list")

    assert status == 1
    err = capsys.readouterr().err
    assert "s3cret-pw" not in err and "127.0.0.1:9" in err


def test_db_upgrade_creates_the_sqlite_folder(url, engine, tmp_path):
    status = wxpay("db", "upgrade")

    assert status == 0
    assert (tmp_path / "shop" / "wxpay.sqlite3").is_file()
    assert alembic_migrations.is_at_head(engine)
