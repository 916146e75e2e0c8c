"""What the deploy tests share: plain HTTP from a chosen source address,
a notify signed with the test rule, many copies at once, and the service's
own records (its database rows and its log lines).
"""

import http.client
import json
import re
import secrets
import threading
import time
import urllib.parse
from pathlib import Path

from sqlalchemy import select

from adapters import sqlalchemy_tables as tables
from adapters.sqlalchemy_store import create_engine_for
from tests.support import cases
from tests.support import rule

NOTIFY_PATH = "/wechatpay/notify"
NOTIFY_OK = (
    b"<xml><return_code><![CDATA[SUCCESS]]></return_code>"
    b"<return_msg><![CDATA[OK]]></return_msg></xml>"
)


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)


def send(url, method, path, body=None, *, headers=None, source=None, timeout=15):
    """One request on a connection of its own, from ``source`` if given."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(
        parsed.hostname,
        parsed.port,
        timeout=timeout,
        source_address=(source, 0) if source else None,
    )
    try:
        connection.request(
            method,
            path,
            body=body,
            headers={"Connection": "close", **(headers or {})},
        )
        response = connection.getresponse()
        data = response.read()
        found = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, found, data)
    finally:
        connection.close()


def start_checkout(url, product_id="P001"):
    """Place a mode-2 order through the service's JSON API."""
    reply = send(
        url,
        "POST",
        "/api/checkouts",
        json.dumps({"product_id": product_id, "mode": 2}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 201, (reply.status, reply.body)
    checkout = reply.json()
    assert checkout["status"] == "NOTPAY"
    return checkout


def new_transaction_id():
    return "4200000000" + "".join(secrets.choice("0123456789") for _ in range(18))


def paid_notify_for(checkout, transaction_id=None):
    """WeChat's notify for ``checkout``, signed with the rule of the tests."""
    fee = str(checkout["total_fee"])
    fields = cases.paid_notify(
        out_trade_no=checkout["out_trade_no"],
        total_fee=fee,
        cash_fee=fee,
        transaction_id=transaction_id or new_transaction_id(),
        nonce_str=secrets.token_hex(16),
    )
    return rule.to_xml(rule.with_sign(fields, cases.KEY, "MD5"))


def post_notify(url, body, *, headers=None, **options):
    return send(
        url,
        "POST",
        NOTIFY_PATH,
        body,
        headers={"Content-Type": "text/xml", **(headers or {})},
        **options,
    )


class Volley:
    """The replies to many copies of one request sent at once."""

    def __init__(self, replies, errors, seconds):
        self.replies = replies
        self.errors = errors
        self.seconds = seconds

    def report(self, label):
        rate = len(self.replies) / self.seconds if self.seconds else 0.0
        print(
            f"\n{label}: {len(self.replies)} replies, {len(self.errors)} errors"
            f" in {self.seconds:.2f} s ({rate:.0f} replies/s)"
        )


def volley(urls, body, *, copies=200, threads=50):
    """POST ``copies`` copies of a notify across ``urls``, all at once.

    ``threads`` senders wait on a barrier, then each sends its share, one
    new connection per copy; copy ``i`` goes to ``urls[i % len(urls)]``.
    """
    replies = []
    errors = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)

    def sender(first):
        barrier.wait()
        for index in range(first, copies, threads):
            try:
                reply = post_notify(urls[index % len(urls)], body, timeout=60)
            except Exception as error:
                with lock:
                    errors.append(repr(error))
            else:
                with lock:
                    replies.append(reply)

    workers = [
        threading.Thread(target=sender, args=(first,), daemon=True)
        for first in range(threads)
    ]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join(90)
    seconds = time.perf_counter() - started
    assert not any(worker.is_alive() for worker in workers), "senders hung"
    return Volley(replies, errors, seconds)


def stored_order(database_url, out_trade_no):
    """The order's row as the database holds it."""
    engine = create_engine_for(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                select(tables.orders).where(
                    tables.orders.c.out_trade_no == out_trade_no
                )
            ).one()
    finally:
        engine.dispose()


def audit_rows(database_url, **where):
    """Rows of the audit trail (inbound_messages) matching ``where``."""
    table = tables.inbound_messages
    query = select(table).order_by(table.c.id)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    engine = create_engine_for(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(query).all()
    finally:
        engine.dispose()


def log_lines(log_path, pattern):
    """Lines of a service log matching the regular expression."""
    text = Path(log_path).read_text(errors="replace")
    return [line for line in text.splitlines() if re.search(pattern, line)]


def wait_for_log_line(log_path, pattern, deadline=5.0):
    until = time.monotonic() + deadline
    while True:
        found = log_lines(log_path, pattern)
        if found or time.monotonic() > until:
            return found
        time.sleep(0.05)
