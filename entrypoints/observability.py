"""Request ids, key=value log lines and per-request metrics.

Every log line of a request carries its id, which also goes back to the
caller in ``X-Request-ID``; nginx makes the id (see deploy/).
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

from adapters.prometheus_metrics import HTTP_LATENCY
from adapters.prometheus_metrics import HTTP_REQUESTS
from domain.signature import MASK
from entrypoints.wsgi_types import StartResponse
from entrypoints.wsgi_types import WSGIApp

REQUEST_ID_HEADER = "X-Request-ID"
# Where the request's id waits in the WSGI environ for the app to read.
REQUEST_ID_ENVIRON = "wxpay.request_id"
_SANE_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}\Z")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "request_id", default="-"
)


class RequestContextMiddleware:
    """Give each request an id, time it and count it.

    The route label comes from Falcon's matched URI template (set in the
    environ by :class:`entrypoints.app.RouteLabelMiddleware`), so a flood
    of random paths cannot explode the metrics' label sets.
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        rid = incoming if _SANE_ID.match(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        environ[REQUEST_ID_ENVIRON] = rid
        started = time.perf_counter()
        status_seen = ["500"]

        def start(status: str, headers: list[Any], *exc: Any) -> Any:
            status_seen[0] = status.split(" ", 1)[0]
            headers = [h for h in headers if h[0].lower() != "x-request-id"]
            headers.append((REQUEST_ID_HEADER, rid))
            return start_response(status, headers, *exc)

        try:
            return self.app(environ, start)
        finally:
            endpoint = environ.get("wxpay.route", "unmatched")
            HTTP_REQUESTS.labels(
                endpoint, environ.get("REQUEST_METHOD", "-"), status_seen[0]
            ).inc()
            HTTP_LATENCY.labels(endpoint).observe(time.perf_counter() - started)
            request_id.reset(token)


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """Write control characters as escapes, so one record stays one line.

    SECURITY(logging): values that came from outside (an out_trade_no, a
    path) could otherwise start a forged line of their own.
    """
    return _CONTROLS.sub(lambda match: repr(match.group())[1:-1], text)


class RequestIdFilter(logging.Filter):
    """Put the current request id on every record as ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class RedactFilter(logging.Filter):
    """Replace any secret that slipped into a record with a mask.

    SECURITY(logging): a second line of defence; no code path logs the
    API key on purpose.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [secret for secret in secrets if secret]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            record.msg = self._mask(message)
            record.args = None
        if record.exc_info and not record.exc_text:
            # The traceback is text too: an exception's message may quote
            # a secret. Formatters use exc_text when it is set.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self._mask(text)
        return True

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=... logger=... request_id=... msg="..."``."""

    def format(self, record: logging.LogRecord) -> str:
        message = escape_controls(record.getMessage()).replace('"', "'")
        line = (
            f"ts={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')}"
            f" level={record.levelname} logger={record.name}"
            f" request_id={getattr(record, 'request_id', '-')}"
            f' msg="{message}"'
        )
        if record.exc_info:
            line += "\n" + (record.exc_text or self.formatException(record.exc_info))
        return line


def configure_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Send key=value lines to stderr, each with its request id."""
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactFilter(secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "wxpay", False):
            root.removeHandler(existing)
    handler.wxpay = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
