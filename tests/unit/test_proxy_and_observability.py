import logging

import pytest

from entrypoints.observability import KeyValueFormatter
from entrypoints.observability import RedactFilter
from entrypoints.observability import RequestContextMiddleware
from entrypoints.observability import RequestIdFilter
from entrypoints.proxy import TrustedProxyMiddleware
from tests.support import cases


def echo_remote_addr(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["REMOTE_ADDR"].encode()]


def call(app, **environ):
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"] = status
        seen["headers"] = dict(headers)

    body = b"".join(app({"REQUEST_METHOD": "GET", **environ}, start_response))
    return body, seen


@pytest.mark.parametrize(
    ("peer", "forwarded", "seen"),
    [
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", "6.6.6.6, 203.0.113.7", "203.0.113.7"),
        ("198.51.100.9", "6.6.6.6", "198.51.100.9"),
        ("127.0.0.1", "not-an-address", "127.0.0.1"),
        ("127.0.0.1", "", "127.0.0.1"),
    ],
    ids=["via proxy", "forged hop", "direct client", "garbage", "none"],
)
def test_only_a_trusted_proxy_sets_the_client_address(peer, forwarded, seen):
    app = TrustedProxyMiddleware(echo_remote_addr, trusted=["127.0.0.1"])

    body, _ = call(app, REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=forwarded)

    assert body.decode() == seen


def test_two_proxies_take_the_address_two_hops_deep():
    app = TrustedProxyMiddleware(
        echo_remote_addr, trusted=["10.0.0.0/8"], proxy_count=2
    )

    body, _ = call(
        app,
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7, 10.0.0.1",
    )

    assert body == b"203.0.113.7"


def test_every_response_carries_a_request_id():
    app = RequestContextMiddleware(echo_remote_addr)

    _, fresh = call(app, REMOTE_ADDR="127.0.0.1")
    _, kept = call(app, REMOTE_ADDR="127.0.0.1", HTTP_X_REQUEST_ID="abc-123")
    _, replaced = call(app, REMOTE_ADDR="127.0.0.1", HTTP_X_REQUEST_ID="x" * 200)

    assert len(fresh["headers"]["X-Request-ID"]) == 32
    assert kept["headers"]["X-Request-ID"] == "abc-123"
    assert replaced["headers"]["X-Request-ID"] != "x" * 200


def test_log_lines_are_key_value_with_the_request_id():
    seen = []

    def app(environ, start_response):
        record = logging.LogRecord("t", logging.INFO, "", 0, 'order "%s"', ("x",), None)
        RequestIdFilter().filter(record)
        seen.append(KeyValueFormatter().format(record))
        start_response("200 OK", [])
        return [b""]

    call(RequestContextMiddleware(app), HTTP_X_REQUEST_ID="rid-1")

    assert "level=INFO logger=t request_id=rid-1 msg=\"order 'x'\"" in seen[0]


def test_a_secret_in_a_log_record_is_masked():
    record = logging.LogRecord(
        "t", logging.ERROR, "", 0, "key is %s", (cases.KEY,), None
    )

    RedactFilter([cases.KEY]).filter(record)

    assert cases.KEY not in record.getMessage()
    assert "********" in record.getMessage()


def test_a_value_with_a_newline_cannot_forge_a_log_line():
    record = logging.LogRecord(
        "t",
        logging.WARNING,
        "",
        0,
        "refused out_trade_no=%s",
        ('X\nts=2026 level=INFO msg="order paid"\x00',),
        None,
    )

    line = KeyValueFormatter().format(record)

    assert "\n" not in line
    assert "\x00" not in line
    assert "\\nts=2026" in line


def test_the_access_log_escapes_control_characters_in_paths():
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    from entrypoints.gunicorn_logging import EscapingLogger

    logger = EscapingLogger(Config())
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/x%0aremote=10.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": "/x\nremote=10.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    response = SimpleNamespace(status="404 Not Found", headers=[], sent=0)

    atoms = logger.atoms(response, [], environ, timedelta(microseconds=5))

    assert atoms["U"] == "/x\\nremote=10.0.0.1"


def test_a_secret_in_an_exception_is_masked_in_the_traceback():
    try:
        raise ValueError(f"bad key {cases.KEY}")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "t", logging.ERROR, "", 0, "failed", (), sys.exc_info()
        )

    RedactFilter([cases.KEY]).filter(record)
    line = KeyValueFormatter().format(record)

    assert "ValueError: bad key ********" in line
    assert cases.KEY not in line
