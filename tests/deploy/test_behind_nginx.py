"""The service behind the real nginx with the shipped proxy rules.

gunicorn listens on 127.0.0.1 and trusts only 127.0.0.1 (nginx's side of
the upstream connection); nginx listens on 127.0.0.2 and clients come
from other loopback addresses, so every hop has an address of its own.

What the service believes about a client shows in two of its own
records: the audit trail keeps ``remote_addr`` with every notify, and
gunicorn's access log writes ``remote=`` from the WSGI environ after the
app has run, that is after TrustedProxyMiddleware has settled
REMOTE_ADDR. Both carry the request id the app answered with.
"""

import contextlib
import json
import re
import secrets
import socket
import time

import pytest

from tests.deploy import stack
from tests.support.nginx import nginx_in_front_of
from tests.support.processes import free_port
from tests.support.service import checkout_service
from tests.support.service import merchant_env
from tests.support.service import prepare_database

pytestmark = pytest.mark.e2e

NGINX_HOST = "127.0.0.2"
CLIENT = "127.0.0.3"
STRANGER = "127.0.0.5"
# Addresses of their own, so the rate-limit tests share no bucket with
# the other tests (nor with each other).
HURRIED_SHOPPER = "127.0.0.6"
OTHER_SHOPPER = "127.0.0.7"
WECHAT_SERVER = "127.0.0.8"
FORGED = "6.6.6.6"
NGINX_LIMIT = 128 * 1024


class Stack:
    def __init__(self, service_url, nginx_url, service_log, env):
        self.service_url = service_url
        self.nginx_url = nginx_url
        self.service_log = service_log
        self.env = env

    def seen_as(self, request_id):
        """The client address the service logged for ``request_id``."""
        pattern = rf"^remote=\S+ request_id={re.escape(request_id)}\b"
        lines = stack.wait_for_log_line(self.service_log, pattern)
        assert len(lines) == 1, lines
        return re.search(r"\bremote=(\S+)", lines[0]).group(1)

    def audited_as(self, request_id):
        """The client address the audit trail kept for ``request_id``."""
        rows = stack.audit_rows(self.env["WXPAY_DATABASE_URL"], request_id=request_id)
        assert len(rows) == 1, rows
        return rows[0].remote_addr

    def reached_service(self, agent):
        """True if a request sent with User-Agent ``agent`` reached gunicorn.

        A marker request through nginx goes last; once gunicorn has logged
        it, anything sent before it would have been logged too.
        """
        marker = "marker-" + secrets.token_hex(8)
        reply = stack.send(
            self.nginx_url, "GET", "/healthz", headers={"User-Agent": marker}
        )
        assert reply.status == 200
        assert stack.wait_for_log_line(self.service_log, re.escape(marker))
        time.sleep(0.2)
        return bool(stack.log_lines(self.service_log, re.escape(agent)))


@pytest.fixture(scope="module")
def behind_nginx(database_servers, simulator, tmp_path_factory):  # noqa: F811
    folder = tmp_path_factory.mktemp("behind-nginx")
    port = free_port("127.0.0.1")
    with nginx_in_front_of(port, folder / "nginx", NGINX_HOST) as nginx_url:
        env = merchant_env(
            simulator.url, nginx_url, database_servers.fresh("postgresql")
        )
        env["WXPAY_TRUSTED_PROXIES"] = "127.0.0.1"
        prepare_database(env)
        with checkout_service(env, folder, port=port, workers=2) as (url, _):
            yield Stack(url, nginx_url, folder / f"service-{port}.log", env)


def wait_for_status(url, checkout_id, wanted, deadline=15.0):
    until = time.monotonic() + deadline
    while True:
        reply = stack.send(url, "GET", f"/api/checkouts/{checkout_id}")
        status = reply.json()["status"]
        if status == wanted or time.monotonic() > until:
            return status
        time.sleep(0.1)


def deliveries_of(simulator, out_trade_no, deadline=5.0):
    """The simulator's notify deliveries for one order, once it has any."""
    until = time.monotonic() + deadline
    while True:
        log = simulator.control("GET", "/control/log?kind=notify")["entries"]
        found = [e for e in log if e["out_trade_no"] == out_trade_no]
        if found or time.monotonic() > until:
            return found
        time.sleep(0.05)


def test_a_payment_completes_through_nginx(behind_nginx, simulator):
    checkout = stack.start_checkout(behind_nginx.nginx_url)

    paid = simulator.control(
        "POST", "/control/pay", {"out_trade_no": checkout["out_trade_no"]}
    )

    assert paid["ok"], paid
    status = wait_for_status(behind_nginx.nginx_url, checkout["id"], "SUCCESS")
    assert status == "SUCCESS"
    ours = deliveries_of(simulator, checkout["out_trade_no"])
    assert len(ours) == 1, ours
    assert ours[0]["url"] == behind_nginx.nginx_url + stack.NOTIFY_PATH
    assert (ours[0]["status"], ours[0]["accepted"]) == (200, True)
    audit = stack.audit_rows(
        behind_nginx.env["WXPAY_DATABASE_URL"],
        out_trade_no=checkout["out_trade_no"],
    )
    assert [(row.verdict, row.remote_addr) for row in audit] == [
        ("accepted", "127.0.0.1")
    ]


def test_the_service_sees_the_client_nginx_saw(behind_nginx):
    reply = stack.send(behind_nginx.nginx_url, "GET", "/api/products", source=CLIENT)

    assert reply.status == 200
    assert behind_nginx.seen_as(reply.header("X-Request-ID")) == CLIENT


def test_a_forwarded_for_forged_through_nginx_is_not_believed(behind_nginx):
    reply = stack.send(
        behind_nginx.nginx_url,
        "POST",
        stack.NOTIFY_PATH,
        b"<xml><return_code>SUCCESS</return_code></xml>",
        headers={"X-Forwarded-For": FORGED, "Content-Type": "text/xml"},
        source=CLIENT,
    )

    assert reply.status == 200
    assert b"FAIL" in reply.body
    request_id = reply.header("X-Request-ID")
    assert behind_nginx.audited_as(request_id) == CLIENT
    assert behind_nginx.seen_as(request_id) == CLIENT


def test_the_service_believes_a_forwarded_for_only_from_the_proxy(behind_nginx):
    def notify_from(source):
        return stack.post_notify(
            behind_nginx.service_url,
            b"<xml><return_code>SUCCESS</return_code></xml>",
            headers={"X-Forwarded-For": FORGED},
            source=source,
        )

    # The control: from the trusted address the header is taken, so the
    # records do show the middleware's decision, not merely the peer.
    trusted = notify_from("127.0.0.1").header("X-Request-ID")
    stranger = notify_from(STRANGER).header("X-Request-ID")

    assert behind_nginx.audited_as(trusted) == FORGED
    assert behind_nginx.seen_as(trusted) == FORGED
    assert behind_nginx.audited_as(stranger) == STRANGER
    assert behind_nginx.seen_as(stranger) == STRANGER


def test_nginx_refuses_a_body_over_its_limit_before_gunicorn(behind_nginx):
    agent = "oversized-" + secrets.token_hex(8)

    reply = stack.post_notify(
        behind_nginx.nginx_url,
        b"<xml>" + b"x" * NGINX_LIMIT + b"</xml>",
        headers={"User-Agent": agent},
    )

    assert reply.status == 413
    assert not behind_nginx.reached_service(agent)


def test_a_body_under_nginx_limit_reaches_the_service_which_refuses_it(
    behind_nginx,
):
    agent = "large-" + secrets.token_hex(8)

    reply = stack.post_notify(
        behind_nginx.nginx_url,
        b"<xml>" + b"x" * (NGINX_LIMIT - 1024) + b"</xml>",
        headers={"User-Agent": agent},
    )

    assert reply.status == 200
    assert b"<return_code><![CDATA[FAIL]]></return_code>" in reply.body
    assert behind_nginx.reached_service(agent)


def test_nginx_refuses_get_on_the_notify_url(behind_nginx):
    agent = "get-notify-" + secrets.token_hex(8)

    reply = stack.send(
        behind_nginx.nginx_url,
        "GET",
        stack.NOTIFY_PATH,
        headers={"User-Agent": agent},
    )

    assert reply.status == 403
    assert not behind_nginx.reached_service(agent)


def test_the_request_id_nginx_makes_comes_back(behind_nginx):
    chosen = "client-chosen-id"

    through_nginx = stack.send(
        behind_nginx.nginx_url,
        "GET",
        "/healthz",
        headers={"X-Request-ID": chosen},
    )
    direct = stack.send(
        behind_nginx.service_url,
        "GET",
        "/healthz",
        headers={"X-Request-ID": chosen},
    )

    # The service echoes a sane id it is given (direct), so the id that
    # came back through nginx is the one nginx put in place of the client's.
    assert direct.header("X-Request-ID") == chosen
    made = through_nginx.header("X-Request-ID")
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert behind_nginx.seen_as(made) == "127.0.0.1"


def test_metrics_are_served_only_to_the_local_scraper(behind_nginx):
    local = stack.send(behind_nginx.nginx_url, "GET", "/metrics")
    remote = stack.send(behind_nginx.nginx_url, "GET", "/metrics", source=CLIENT)

    assert local.status == 200
    assert remote.status == 403


def post_checkout(url, source):
    body = json.dumps({"product_id": "P001", "mode": 2}).encode()
    headers = {"Content-Type": "application/json"}
    started = time.monotonic()
    reply = stack.send(
        url, "POST", "/api/checkouts", body, headers=headers, source=source
    )
    return reply, time.monotonic() - started


def test_nginx_limits_how_fast_one_client_starts_checkouts(behind_nginx):
    url = behind_nginx.nginx_url

    burst = [post_checkout(url, HURRIED_SHOPPER) for _ in range(20)]

    statuses = [reply.status for reply, _ in burst]
    allowed = statuses.count(201)
    slowest = max(seconds for reply, seconds in burst if reply.status == 429)
    print(
        f"\n20 checkouts at once from one client: {allowed} placed, then 429"
        f" (slowest refusal {slowest * 1000:.1f} ms)"
    )
    # 1 r/s with a burst of 5: the first 6 pass, and maybe one more if a
    # second went by during the volley; everything after is refused.
    assert 6 <= allowed <= 8, statuses
    assert statuses == [201] * allowed + [429] * (20 - allowed)
    assert slowest < 0.5
    reply = next(reply for reply, _ in burst if reply.status == 429)
    assert reply.header("Retry-After") == "1"
    assert reply.json()["title"] == "Too Many Requests"

    # Polling a checkout is not limited, and another client is not held
    # back by this one.
    first = burst[0][0].json()
    polls = [
        stack.send(url, "GET", f"/api/checkouts/{first['id']}", source=HURRIED_SHOPPER)
        for _ in range(10)
    ]
    assert {poll.status for poll in polls} == {200}
    assert post_checkout(url, OTHER_SHOPPER)[0].status == 201


def test_wechat_at_a_busy_shops_rate_is_never_limited(behind_nginx):
    # 40 notifies at 20 a second from one WeChat server address; they are
    # forgeries (unsigned), so the service answers FAIL, but nginx lets
    # every one through.
    body = b"<xml><return_code>SUCCESS</return_code></xml>"
    statuses = []
    started = time.monotonic()

    for index in range(40):
        time.sleep(max(0.0, started + index / 20 - time.monotonic()))
        reply = stack.post_notify(behind_nginx.nginx_url, body, source=WECHAT_SERVER)
        statuses.append(reply.status)

    assert statuses == [200] * 40


@contextlib.contextmanager
def slow_clients(url, count, path=stack.NOTIFY_PATH):
    """``count`` connections that send headers and half a body, then stall."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: text/xml\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    with contextlib.ExitStack() as stack_of_sockets:
        for _ in range(count):
            connection = socket.create_connection((host, int(port)), timeout=5)
            stack_of_sockets.enter_context(connection)
            connection.sendall(head + b"<xml>" + b"x" * 495)
        yield


def test_slow_clients_through_nginx_hold_no_gunicorn_thread(behind_nginx):
    # More stalled uploads than gunicorn has threads (2 workers x 4).
    body = b"<xml><return_code>SUCCESS</return_code></xml>"

    with slow_clients(behind_nginx.nginx_url, 16):
        time.sleep(0.5)
        started = time.monotonic()
        reply = stack.post_notify(behind_nginx.nginx_url, body, timeout=10)
        seconds = time.monotonic() - started

    print(f"\na notify with 16 stalled uploads at nginx: {seconds * 1000:.0f} ms")
    assert reply.status == 200
    assert seconds < 1.0
