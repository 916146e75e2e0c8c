"""Many payers scanning one mode-1 code at once open exactly one order.

Each scan is a signed callback from WeChat; the service answers one of
them with a prepay_id and every other payer with a readable refusal. Only
the database can arbitrate between gunicorn's worker processes: the
checkout is claimed by a compare-and-set UPDATE.
"""

import json
import threading
from collections import Counter

import pytest
from sqlalchemy import select

from adapters import sqlalchemy_tables as tables
from adapters import xml_codec
from adapters.sqlalchemy_store import create_engine_for
from domain.usecases import BEING_PAID
from tests.deploy import stack
from tests.support import cases
from tests.support import rule
from tests.support.processes import free_port
from tests.support.service import checkout_service

pytestmark = pytest.mark.e2e

PAYERS = 40


def mode_1_checkout(url):
    reply = stack.send(
        url,
        "POST",
        "/api/checkouts",
        json.dumps({"product_id": "P001", "mode": 1}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 201, reply.body
    return reply.json()


def scans_at_once(url, checkout_id):
    bodies = [
        rule.to_xml(
            rule.with_sign(
                {**cases.scan_callback(checkout_id), "openid": f"oPayer{index:04d}"},
                cases.KEY,
            )
        )
        for index in range(PAYERS)
    ]
    replies = [None] * PAYERS
    barrier = threading.Barrier(PAYERS)

    def scan(index):
        barrier.wait()
        replies[index] = stack.send(
            url, "POST", "/wechatpay/callback", bodies[index], timeout=30
        )

    threads = [threading.Thread(target=scan, args=(i,)) for i in range(PAYERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return replies


def orders_of(database_url, checkout_id):
    engine = create_engine_for(database_url)
    try:
        with engine.connect() as connection:
            query = select(tables.orders).where(
                tables.orders.c.checkout_id == checkout_id
            )
            return connection.execute(query).all()
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_payers_scanning_one_code_at_once_open_exactly_one_order(
    fresh_service_env, tmp_path, backend
):
    port = free_port()
    env = fresh_service_env(backend, public_url=f"http://127.0.0.1:{port}")
    with checkout_service(env, tmp_path, port=port, workers=4) as (url, _):
        checkout = mode_1_checkout(url)

        replies = scans_at_once(url, checkout["id"])

    fields = [xml_codec.parse(reply.body) for reply in replies]
    outcomes = Counter(
        "prepay" if f.get("prepay_id") else f.get("err_code_des") for f in fields
    )
    assert {reply.status for reply in replies} == {200}
    assert outcomes == {"prepay": 1, BEING_PAID: PAYERS - 1}
    assert all(f["sign"] == rule.sign_md5(f, cases.KEY) for f in fields)
    assert len(orders_of(env["WXPAY_DATABASE_URL"], checkout["id"])) == 1
