"""One real stack for the end-to-end tests: simulator, gunicorn, SQLite.

The simulator plays WeChat (its merchant API is the service's
``WXPAY_API_BASE``) and the service's URL is the simulator's public URL,
so notifies and mode-1 callbacks travel over real HTTP both ways. Both
are started once per session and stopped by PID by the helpers in
``tests/support``; each test makes its own checkouts and orders, so the
tests do not depend on one another.
"""

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
import sqlalchemy
import urllib3

from tests.support import cases
from tests.support import rule
from tests.support.processes import free_port
from tests.support.service import checkout_service
from tests.support.service import merchant_env
from tests.support.service import prepare_database
from tests.support.simulator import running_simulator

NOTIFY_OK = (
    b"<xml><return_code><![CDATA[SUCCESS]]></return_code>"
    b"<return_msg><![CDATA[OK]]></return_msg></xml>"
)
# The gateway gives unifiedorder 4.5 s in all; the simulator must wait
# longer than that for a callback, or it would judge a slow-upstream
# callback before the service has had its chance to answer it.
CALLBACK_TIMEOUT = 8.0
TIME_SCALE = 0.01


@dataclass
class Answer:
    status: int
    headers: dict
    data: bytes

    def json(self):
        return json.loads(self.data)

    def xml(self):
        return rule.parse(self.data)


class Stack:
    """The running service and simulator, and short ways to talk to them."""

    def __init__(self, url, simulator, database_url, sign_type, log_path):
        self.url = url
        self.log_path = log_path
        self.simulator = simulator
        self.database_url = database_url
        self.sign_type = sign_type
        self.http = urllib3.PoolManager(maxsize=16, retries=False)
        self.engine = sqlalchemy.create_engine(database_url)
        self._serial = 0
        self._lock = threading.Lock()

    # --- the service's JSON API ---------------------------------------------

    def request(self, method, path, *, body=None, headers=None, timeout=15.0):
        response = self.http.request(
            method,
            self.url + path,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(total=timeout),
            redirect=False,
        )
        return Answer(response.status, response.headers, response.data)

    def checkout(self, product_id="P001", mode=2):
        answer = self.request(
            "POST",
            "/api/checkouts",
            body=json.dumps({"product_id": product_id, "mode": mode}),
            headers={"Content-Type": "application/json"},
        )
        assert answer.status == 201, answer.data
        return answer.json()

    def view(self, checkout_id):
        answer = self.request("GET", f"/api/checkouts/{checkout_id}")
        assert answer.status == 200, answer.data
        return answer.json()

    def wait_for_status(self, checkout_id, status="SUCCESS", deadline=10.0):
        until = time.monotonic() + deadline
        while True:
            view = self.view(checkout_id)
            if view["status"] == status or time.monotonic() > until:
                return view
            time.sleep(0.05)

    # --- WeChat's side, spoken by the test ----------------------------------

    def post_xml(self, path, body):
        return self.request(
            "POST", path, body=body, headers={"Content-Type": "text/xml"}
        )

    def notify(self, fields, key=cases.KEY, algorithm="MD5"):
        body = rule.to_xml(rule.with_sign(fields, key, algorithm))
        return self.post_xml("/wechatpay/notify", body)

    def transaction_id(self):
        with self._lock:
            self._serial += 1
            serial = self._serial
        return f"42000000002024{time.time_ns() % 10**10:010d}{serial:04d}"

    def notify_for(self, order, **overrides):
        """A paid notify for one of the service's orders, as in C01."""
        fee = str(order["total_fee"])
        fields = {
            "out_trade_no": order["out_trade_no"],
            "total_fee": fee,
            "cash_fee": fee,
            "transaction_id": self.transaction_id(),
            **overrides,
        }
        return cases.paid_notify(**fields)

    def sim(self, method, path, body=None):
        return self.simulator.control(method, path, body)

    def log(self, kind, out_trade_no=None, since=0):
        entries = self.sim("GET", f"/control/log?kind={kind}&since={since}")
        return [
            entry
            for entry in entries["entries"]
            if out_trade_no is None or entry["out_trade_no"] == out_trade_no
        ]

    def last_seq(self):
        entries = self.sim("GET", "/control/log")["entries"]
        return max((entry["seq"] for entry in entries), default=0)

    def wait_for_log(self, kind, out_trade_no, deadline=10.0):
        until = time.monotonic() + deadline
        while True:
            entries = self.log(kind, out_trade_no)
            if any(e["accepted"] for e in entries) or time.monotonic() > until:
                return entries
            time.sleep(0.05)

    # --- the service's own log (gunicorn's output) ----------------------------

    def service_log(self):
        return self.log_path.read_text(errors="replace")

    def wait_for_service_log(self, count, *args, deadline=5.0):
        """Poll ``count(self, *args)`` until it is non-zero; return it."""
        until = time.monotonic() + deadline
        while True:
            found = count(self, *args)
            if found or time.monotonic() > until:
                return found
            time.sleep(0.05)

    # --- the database, read behind the service's back -----------------------

    def stored_order(self, out_trade_no):
        query = sqlalchemy.text(
            "SELECT state, transaction_id, time_end, paid_at, updated_at"
            " FROM orders WHERE out_trade_no = :out_trade_no"
        )
        with self.engine.connect() as connection:
            row = connection.execute(query, {"out_trade_no": out_trade_no})
            return dict(row.mappings().one())

    def set_stored_state(self, out_trade_no, state):
        query = sqlalchemy.text(
            "UPDATE orders SET state = :state WHERE out_trade_no = :out_trade_no"
        )
        with self.engine.begin() as connection:
            connection.execute(query, {"state": state, "out_trade_no": out_trade_no})

    def close(self):
        self.http.clear()
        self.engine.dispose()


def notpay_order(stack, product_id="P001"):
    """A fresh mode-2 checkout; its order is NOTPAY on both sides."""
    checkout = stack.checkout(product_id, mode=2)
    assert checkout["status"] == "NOTPAY"
    assert checkout["out_trade_no"]
    return checkout


def wait_for_stored_state(stack, out_trade_no, state, deadline=10.0):
    until = time.monotonic() + deadline
    while True:
        stored = stack.stored_order(out_trade_no)
        if stored["state"] == state or time.monotonic() > until:
            return stored
        time.sleep(0.05)


def static_product_qr(product_id, key=cases.KEY):
    """A printed mode-1 code for a catalogue product, signed by the rule."""
    fields = {
        "appid": cases.APPID,
        "mch_id": cases.MCH_ID,
        "nonce_str": f"static{time.time_ns()}"[:32],
        "product_id": product_id,
        "time_stamp": str(int(time.time())),
    }
    query = urlencode({"sign": rule.sign_md5(fields, key), **fields})
    return f"weixin://wxpay/bizpayurl?{query}"


@pytest.fixture(scope="session")
def start_stack(tmp_path_factory):
    """Start a simulator and a 2-worker service for one sign type."""

    @contextlib.contextmanager
    def start(sign_type="MD5"):
        folder = tmp_path_factory.mktemp(f"stack-{sign_type.lower()}")
        database_url = f"sqlite:///{folder / 'wxpay.sqlite3'}"
        with contextlib.ExitStack() as started:
            simulator, port = simulator_beside_a_free_port(
                started, database_url, sign_type
            )
            url = f"http://127.0.0.1:{port}"
            env = merchant_env(simulator.url, url, database_url, sign_type)
            prepare_database(env)
            service_url, _ = started.enter_context(
                checkout_service(env, folder, port=port, workers=2)
            )
            log_path = folder / f"service-{port}.log"
            stack = Stack(service_url, simulator, database_url, sign_type, log_path)
            started.callback(stack.close)
            yield stack

    return start


def simulator_beside_a_free_port(started, database_url, sign_type):
    """Start a simulator that calls back a service port it does not hold.

    The simulator must know the service's URL before the service runs, so
    the service's port is picked first; the simulator's own free port
    could then be that very one, so pick again if it is.
    """
    for _ in range(5):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = merchant_env("http://unused", url, database_url, sign_type)
        attempt = contextlib.ExitStack()
        simulator = attempt.enter_context(
            running_simulator(
                env, time_scale=TIME_SCALE, callback_timeout=CALLBACK_TIMEOUT
            )
        )
        if not simulator.url.endswith(f":{port}"):
            started.push(attempt.pop_all())
            return simulator, port
        attempt.close()
    raise RuntimeError("no free port apart from the simulator's")


@pytest.fixture(scope="session")
def stack(start_stack):
    """The shared MD5 merchant's stack."""
    with start_stack("MD5") as stack:
        yield stack
