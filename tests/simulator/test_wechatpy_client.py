"""An independent client, wechatpy 1.8.18, against `wxpay simulator serve`
running as its own process."""

import subprocess
import sys

import pytest
from wechatpy.exceptions import WeChatPayException
from wechatpy.pay import WeChatPay
from wechatpy.pay.utils import calculate_signature

from tests.support import cases
from tests.support.simulator import running_simulator


@pytest.fixture(scope="module")
def served():
    with running_simulator(time_scale=0.001) as simulator:
        yield simulator


@pytest.fixture
def simulator(served):
    served.control("POST", "/control/reset", {})
    return served


def _client(simulator, key=cases.KEY):
    client = WeChatPay(appid=cases.APPID, api_key=key, mch_id=cases.MCH_ID, timeout=10)
    client.API_BASE_URL = simulator.url + "/"
    return client


def _create(client, out_trade_no=cases.OTN):
    return client.order.create(
        trade_type="NATIVE",
        body="shop-test",
        total_fee=100,
        notify_url="http://127.0.0.1:9/wechatpay/notify",
        client_ip="127.0.0.1",
        out_trade_no=out_trade_no,
        product_id="P001",
    )


def _verified(client, answer):
    fields = dict(answer)
    sign = fields.pop("sign")
    assert sign == calculate_signature(fields, cases.KEY)
    assert client.check_signature(dict(answer))
    return fields


def test_wechatpy_places_queries_and_closes_an_order(simulator):
    client = _client(simulator)

    created = _verified(client, _create(client))
    queried = _verified(client, client.order.query(out_trade_no=cases.OTN))
    simulator.control("POST", "/control/clock", {"advance": 301})
    closed = _verified(client, client.order.close(cases.OTN))
    after = _verified(client, client.order.query(out_trade_no=cases.OTN))

    assert created["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert queried["trade_state"] == "NOTPAY"
    assert closed["result_code"] == "SUCCESS"
    assert after["trade_state"] == "CLOSED"


def test_wechatpy_sees_a_paid_order_and_orderpaid_on_close(simulator):
    client = _client(simulator)
    code_url = _create(client)["code_url"]

    simulator.control("POST", "/control/scan", {"qr": code_url, "pay": True})
    queried = _verified(client, client.order.query(out_trade_no=cases.OTN))
    simulator.control("POST", "/control/clock", {"advance": 301})
    with pytest.raises(WeChatPayException) as refused:
        client.order.close(cases.OTN)

    assert queried["trade_state"] == "SUCCESS"
    assert refused.value.errcode == "ORDERPAID"


def test_a_wechatpy_request_signed_with_the_wrong_key_gets_signerror(simulator):
    client = _client(simulator, key=cases.WRONG_KEY)

    with pytest.raises(WeChatPayException) as refused:
        _create(client)

    assert refused.value.return_code == "FAIL"
    assert refused.value.return_msg == "签名错误"
    assert refused.value.response.status_code == 200
    assert b"SIGNERROR" in refused.value.response.content


def test_the_cli_pays_and_lists_orders_of_the_running_simulator(simulator):
    _create(_client(simulator))

    def wxpay(*args):
        command = [sys.executable, "-m", "entrypoints.cli", "simulator", *args]
        command += ["--url", simulator.url]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    paid = wxpay("pay", cases.OTN)
    again = wxpay("pay", cases.OTN)
    listed = wxpay("orders", cases.OTN)

    assert paid.returncode == 0, paid.stderr
    assert '"trade_state": "SUCCESS"' in paid.stdout
    assert again.returncode == 1
    assert "该订单已支付" in again.stdout
    assert '"transaction_id": "4200' in listed.stdout


def test_serve_stops_cleanly_on_sigterm():
    with running_simulator(time_scale=0.001) as simulator:
        pass

    assert simulator.process.returncode == 0
    assert "stopped" in simulator.output()
