"""A small threaded WSGI server for the simulator (stdlib ``wsgiref``).

The simulator keeps its state in memory, so it runs as one process with
one thread per request.
"""

from __future__ import annotations

import logging
import socketserver
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler
from wsgiref.simple_server import WSGIServer
from wsgiref.simple_server import make_server
from wsgiref.types import WSGIApplication

logger = logging.getLogger(__name__)


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("http %s", format % args)


class Server:
    """Serve ``app`` on ``host:port`` (port 0 picks a free one).

    ``serve_forever`` blocks; ``shutdown`` may be called from any other
    thread (a signal handler starts one) and makes it return.
    """

    def __init__(self, app: WSGIApplication, host: str, port: int) -> None:
        self._httpd = make_server(
            host,
            port,
            app,
            server_class=_ThreadingServer,
            handler_class=_QuietHandler,
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        self._httpd.shutdown()

    def close(self) -> None:
        self._httpd.server_close()
