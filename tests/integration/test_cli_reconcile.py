"""``wxpay reconcile`` on a SQLite file: options, exit status, output.

WeChat here is a closed local port, so every order is left for the next
run; the settling itself is proven in tests/unit/test_reconcile.py and,
against the simulator, in tests/e2e/test_reconciliation.py.
"""

import argparse
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest

from adapters.sqlalchemy_store import SqlAlchemyUnitOfWork
from adapters.sqlalchemy_store import create_engine_for
from domain.model import Order
from domain.money import Fen
from entrypoints.commands import database
from entrypoints.commands import reconcile
from tests.support import cases
from tests.support.processes import free_port

OTN = "20240101100000RECONCILE1"


def wxpay(*argv):
    """Run a ``wxpay`` sub-command in this process, through its parser."""
    parser = argparse.ArgumentParser(prog="wxpay")
    subparsers = parser.add_subparsers(dest="command", required=True)
    database.register(subparsers)
    reconcile.register(subparsers)
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture
def url(tmp_path, monkeypatch):
    monkeypatch.delenv("WXPAY_CONFIG", raising=False)
    url = f"sqlite:///{tmp_path}/wxpay.sqlite3"
    monkeypatch.setenv("WXPAY_DATABASE_URL", url)
    monkeypatch.setenv("WXPAY_APPID", cases.APPID)
    monkeypatch.setenv("WXPAY_MCH_ID", cases.MCH_ID)
    monkeypatch.setenv("WXPAY_API_KEY", cases.KEY)
    # Nothing listens there: WeChat is unavailable.
    monkeypatch.setenv("WXPAY_API_BASE", f"http://127.0.0.1:{free_port()}")
    return url


def add_unpaid_order(url, age):
    created_at = datetime.now(UTC) - age
    order = Order(OTN, "P001", "Green tea", Fen(100), created_at)
    order.attach_prepay("wx_prepay_1", "weixin://wxpay/bizpayurl?pr=x", created_at)
    engine = create_engine_for(url)
    try:
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.orders.add(order)
            uow.commit()
    finally:
        engine.dispose()


def test_a_run_with_wechat_down_leaves_the_order_and_succeeds(url, capsys):
    assert wxpay("db", "upgrade") == 0
    add_unpaid_order(url, timedelta(minutes=6))
    capsys.readouterr()

    status = wxpay("reconcile")

    assert status == 0
    assert capsys.readouterr().out == (
        f"{OTN} NOTPAY -> NOTPAY WeChat unavailable, left for the next run\n"
    )


def test_a_run_takes_only_orders_older_than_asked(url, capsys):
    wxpay("db", "upgrade")
    add_unpaid_order(url, timedelta(minutes=3))
    capsys.readouterr()

    assert wxpay("reconcile") == 0
    assert capsys.readouterr().out == ""
    assert wxpay("reconcile", "--older-than", "2.5") == 0
    assert capsys.readouterr().out.startswith(f"{OTN} NOTPAY -> NOTPAY ")


def test_one_order_by_its_number(url, capsys):
    wxpay("db", "upgrade")
    capsys.readouterr()

    status = wxpay("reconcile", "--out-trade-no", "NOSUCHORDER1")

    assert status == 0
    assert capsys.readouterr().out == "NOSUCHORDER1 - -> - no such order\n"


def test_a_database_not_migrated_fails_the_run(url, capsys):
    status = wxpay("reconcile")

    assert status == 1
    assert "wxpay db upgrade" in capsys.readouterr().err


def test_missing_settings_fail_the_run(url, monkeypatch, capsys):
    monkeypatch.delenv("WXPAY_API_KEY")

    status = wxpay("reconcile")

    assert status == 1
    assert "WXPAY_API_KEY" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [("--older-than", "-1"), ("--limit", "0")], ids=["older", "limit"]
)
def test_a_wrong_option_is_a_usage_error(url, argv):
    assert wxpay("reconcile", *argv) == 2
