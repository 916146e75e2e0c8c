"""Mount the checkout service in front of another WSGI app.

A shop that already runs Flask, Django or any WSGI app adds WeChat Pay
with one line::

    app.wsgi_app = WeChatPayMiddleware(app.wsgi_app, prefix="/pay")

Requests under ``/pay/wechatpay/`` (WeChat's notify and mode-1
callback) go to the checkout service; with ``shop=True`` its pages, JSON
API, static files and ops endpoints do too. Everything else reaches the
wrapped app exactly as it came.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from entrypoints.app import create_app
from entrypoints.app import production_stack
from entrypoints.bootstrap import Service
from entrypoints.bootstrap import build_service
from entrypoints.settings import NOTIFY_PATH
from entrypoints.settings import ConfigError
from entrypoints.settings import Settings
from entrypoints.wsgi_types import StartResponse
from entrypoints.wsgi_types import WSGIApp

log = logging.getLogger(__name__)

# Always ours: WeChat's notify and mode-1 callback.
WECHAT_TREE = "/wechatpay/"
# Ours with shop=True: the pages, the JSON API and the static files...
SHOP_TREES = ("/checkout/", "/api/", "/static/")
# ...and these exact paths (the shop page is "/").
SHOP_PATHS = ("/", "/healthz", "/readyz", "/metrics")


class WeChatPayMiddleware:
    """Serve the checkout service's URLs; pass every other request on.

    The checkout app is built once, here, over the real adapters (or the
    ``service`` given), and wrapped as production wraps it: trusted-proxy
    client address, request ids, metrics. A request that is not the
    service's costs one string prefix check and a set lookup, and reaches
    ``app`` with the same environ and the same ``start_response``.

    Args:
        app: the WSGI app to wrap (``flask_app.wsgi_app``, ...).
        settings: the service's settings; by default read from the
            ``WXPAY_*`` environment (see ``entrypoints.settings``).
        service: a ready service (tests, or a host that wires its own
            adapters); wins over ``settings``.
        prefix: where the service is mounted, like ``"/pay"``; empty
            for the root. WeChat must be given the same prefix: set
            ``WXPAY_PUBLIC_URL`` to ``https://shop.example/pay``.
        shop: also serve the shop's pages, ``/api/``, ``/static/``,
            ``/healthz``, ``/readyz`` and ``/metrics`` under ``prefix``.
            Off by default: only the two URLs WeChat posts to are taken.

    NOTE(middleware): logging stays the host's: no handler is added and
    the key=value format is not imposed. A host that wants ours, and its
    mask for the API key, calls ``entrypoints.observability
    .configure_logging(secrets=[...])`` itself.

    SECURITY(middleware): with ``shop=True``, ``/metrics`` and ``/readyz``
    answer whoever reaches the host; let only the scraper and the probe
    through at the proxy, as deploy/nginx does for ``wxpay serve``.

    Raises:
        ConfigError: no ``settings`` or ``service`` was given and the
            environment lacks a setting; the message names the variable.
        ValueError: ``prefix`` is not a path like ``"/pay"``.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        settings: Settings | None = None,
        service: Service | None = None,
        prefix: str = "",
        shop: bool = False,
    ) -> None:
        self.app = app
        self.prefix = _check_prefix(prefix)
        if service is None:
            service = build_service(settings or _settings_from_env())
        _warn_if_wechat_cannot_reach(service, self.prefix)
        self.service = service
        self.checkout = production_stack(create_app(service))

        trees = [self.prefix + WECHAT_TREE]
        paths = set()
        if shop:
            trees += [self.prefix + tree for tree in SHOP_TREES]
            paths = {self.prefix + path for path in SHOP_PATHS}
            if self.prefix:
                paths.add(self.prefix)
        # NOTE(middleware): str.startswith takes a tuple and a frozenset
        # lookup hashes once; the pass-through path allocates nothing.
        self._trees = tuple(trees)
        self._paths = frozenset(paths)

    def __call__(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if not (path.startswith(self._trees) or path in self._paths):
            return self.app(environ, start_response)

        # NOTE(middleware): the checkout app gets a copy of the environ,
        # so middleware around this one still sees the path it was sent
        # and the address before the trusted-proxy rewrite.
        inner = dict(environ)
        inner["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.prefix
        inner["PATH_INFO"] = path[len(self.prefix) :] or "/"
        return self.checkout(inner, start_response)


def _check_prefix(prefix: str) -> str:
    if prefix in ("", "/"):
        return ""
    shaped = (
        prefix.startswith("/")
        and not prefix.endswith("/")
        and prefix.isascii()
        and not any(char in prefix for char in "?#% ")
    )
    if not shaped:
        raise ValueError(
            f"prefix must be a path like '/pay' (a leading '/', no trailing"
            f" '/', no query, ASCII); got {prefix!r}"
        )
    return prefix


def _settings_from_env() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as error:
        raise ConfigError(
            f"WeChatPayMiddleware needs the service's settings: pass"
            f" settings= or service=, or set the WXPAY_* variables ({error})"
        ) from None


def _warn_if_wechat_cannot_reach(service: Service, prefix: str) -> None:
    # NOTE(middleware): a warning, not an error: a proxy in front may add
    # or strip the prefix. Without one, a notify URL outside the prefix
    # sends every payment result where nothing listens.
    notify_path = urlsplit(service.merchant.notify_url).path
    expected = prefix + NOTIFY_PATH
    if notify_path != expected:
        log.warning(
            "notify_url path is %s but the middleware serves %s;"
            " set WXPAY_PUBLIC_URL to end with %r unless a proxy maps it",
            notify_path,
            expected,
            prefix or "/",
        )
