"""Fixtures: an in-process simulator for the fake merchant, and a stub
merchant (a real HTTP server on loopback) that answers as told."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest
from falcon import testing

from domain.signature import ApiKey
from domain.signature import SignType
from simulator.app import Simulator
from simulator.config import SimulatorConfig
from simulator.state import Merchant
from tests.support import cases
from tests.support import rule

SUCCESS_REPLY = (
    b"<xml><return_code><![CDATA[SUCCESS]]></return_code>"
    b"<return_msg><![CDATA[OK]]></return_msg></xml>"
)


class StubMerchant:
    """A merchant's server on loopback: records requests, replies as told.

    ``answer(path, body) -> (status, body, delay)`` decides each reply; by
    default every POST gets WeChat's exact SUCCESS acknowledgement.
    """

    def __init__(self):
        self.requests = []
        self.answer = lambda path, body: (200, SUCCESS_REPLY, 0.0)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                stub.requests.append((self.path, body, time.monotonic()))
                status, reply, delay = stub.answer(self.path, body)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.02,), daemon=True
        )
        self.thread.start()

    def bodies(self, path):
        return [body for seen, body, _ in self.requests if seen == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    merchant = StubMerchant()
    yield merchant
    merchant.close()


def make_merchant(callback_url="", sign_type=SignType.MD5, mch_id=cases.MCH_ID):
    return Merchant(
        appid=cases.APPID,
        mch_id=mch_id,
        api_key=ApiKey(cases.KEY),
        sign_type=sign_type,
        callback_url=callback_url,
    )


@pytest.fixture
def make_simulator():
    made = []

    def make(*merchants, time_scale=0.001, callback_timeout=1.0):
        config = SimulatorConfig(
            merchants=merchants or (make_merchant(),),
            time_scale=time_scale,
            callback_timeout=callback_timeout,
        )
        simulator = Simulator(config)
        made.append(simulator)
        return simulator

    yield make
    for simulator in made:
        simulator.close()


@pytest.fixture
def sim(make_simulator, stub):
    return make_simulator(make_merchant(callback_url=stub.url + "/callback"))


class WeChat:
    """Talk to a simulator the way a merchant does, signing with the
    independent rule from tests/support."""

    def __init__(self, simulator):
        self.simulator = simulator
        self.client = testing.TestClient(simulator.app)

    def call(self, path, fields, key=cases.KEY, algorithm="MD5", sign=True):
        base = {"appid": cases.APPID, "mch_id": cases.MCH_ID, "nonce_str": cases.NONCE}
        message = {**base, **fields}
        message = {k: v for k, v in message.items() if v is not None}
        if sign:
            message = rule.with_sign(message, key, algorithm)
        result = self.client.simulate_post(path, body=rule.to_xml(message))
        assert result.status_code == 200, result.text
        return rule.parse(result.content)

    def order(self, out_trade_no=cases.OTN, **fields):
        request = {
            "body": "shop-test",
            "out_trade_no": out_trade_no,
            "total_fee": "100",
            "spbill_create_ip": "127.0.0.1",
            "notify_url": "http://127.0.0.1:9/wechatpay/notify",
            "trade_type": "NATIVE",
            "product_id": "P001",
            **fields,
        }
        return self.call("/pay/unifiedorder", request)

    def control(self, path, body=None, method="POST"):
        result = self.client.simulate_request(
            method, path, body=json.dumps(body) if body is not None else None
        )
        assert result.status_code < 300, result.text
        return result.json

    def pay(self, out_trade_no=cases.OTN, **body):
        return self.control("/control/pay", {"out_trade_no": out_trade_no, **body})


@pytest.fixture
def wechat(sim):
    return WeChat(sim)


def assert_signed(fields, algorithm="MD5", key=cases.KEY):
    signer = rule.sign_md5 if algorithm == "MD5" else rule.sign_hmac
    assert fields["sign"] == signer(fields, key)


def wait_for(predicate, timeout=5.0, interval=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s")
