"""The WSGI application: routes, and the one place errors become answers.

``create_app(service)`` builds the app from a ready :class:`Service`;
tests call it with in-memory storage and a fake gateway.
``application_from_env()`` is the production factory: it reads the
settings and wires the real adapters (``entrypoints.wsgi`` calls it).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import falcon

from domain.ports import StorageUnavailable
from domain.usecases import CheckoutNotFound
from domain.usecases import OrderingFailed
from domain.usecases import ProductUnavailable
from domain.usecases import UnknownProduct
from entrypoints.bootstrap import Service
from entrypoints.bootstrap import build_service
from entrypoints.checkout_resources import CheckoutQrResource
from entrypoints.checkout_resources import CheckoutResource
from entrypoints.checkout_resources import CheckoutsResource
from entrypoints.checkout_resources import ProductsResource
from entrypoints.observability import RequestContextMiddleware
from entrypoints.observability import configure_logging
from entrypoints.ops_resources import HealthResource
from entrypoints.ops_resources import MetricsResource
from entrypoints.ops_resources import ReadinessResource
from entrypoints.pages import CheckoutPage
from entrypoints.pages import Favicon
from entrypoints.pages import ShopPage
from entrypoints.pages import StaticFiles
from entrypoints.pages import base_path
from entrypoints.pages import error_page
from entrypoints.proxy import TrustedProxyMiddleware
from entrypoints.proxy import parse_trusted
from entrypoints.settings import CALLBACK_PATH
from entrypoints.settings import NOTIFY_PATH
from entrypoints.settings import ConfigError
from entrypoints.settings import Settings
from entrypoints.wechat_resources import PaymentNotifyResource
from entrypoints.wechat_resources import ScanCallbackResource
from entrypoints.wsgi_types import WSGIApp

log = logging.getLogger(__name__)

# How long a client should wait before trying again, in seconds.
RETRY_AFTER_WECHAT = 10
RETRY_AFTER_STORAGE = 5


TRUSTED_PROXIES_VARIABLE = "WXPAY_TRUSTED_PROXIES"
DEFAULT_TRUSTED_PROXIES = "127.0.0.1"

App = falcon.App[falcon.Request, falcon.Response]


class StartupError(RuntimeError):
    """The service cannot start; the message says what to fix."""


class RouteLabelMiddleware:
    """Name the matched route (its URI template) for the metrics.

    ``RequestContextMiddleware`` labels its counters with it, so a flood
    of random paths adds one label (``unmatched``), not one per path.
    """

    def process_resource(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: object,
        params: dict[str, Any],
    ) -> None:
        if req.uri_template:
            req.env["wxpay.route"] = req.uri_template


def create_app(service: Service) -> App:
    """Build the app over a ready service.

    Args:
        service: the merchant, storage, gateway and clock to use.
    """
    app = App(middleware=[RouteLabelMiddleware()])

    app.add_route(CALLBACK_PATH, ScanCallbackResource(service))
    app.add_route(NOTIFY_PATH, PaymentNotifyResource(service))

    app.add_route("/", ShopPage(service))
    app.add_route("/checkout/{checkout_id}", CheckoutPage(service))
    app.add_route("/static/{name}", StaticFiles())
    app.add_route("/favicon.ico", Favicon())

    app.add_route("/api/products", ProductsResource(service))
    app.add_route("/api/checkouts", CheckoutsResource(service))
    app.add_route("/api/checkouts/{checkout_id}", CheckoutResource(service))
    qr = CheckoutQrResource(service)
    app.add_route("/api/checkouts/{checkout_id}/qr.svg", qr, suffix="svg")
    app.add_route("/api/checkouts/{checkout_id}/qr.png", qr, suffix="png")
    app.add_route("/healthz", HealthResource())
    app.add_route("/readyz", ReadinessResource(service.readiness))
    app.add_route("/metrics", MetricsResource())

    _register_error_handlers(app)
    return app


# --- errors -----------------------------------------------------------------


def _register_error_handlers(app: App) -> None:
    # NOTE(errors): falcon picks the handler of the nearest class in the
    # exception's MRO, so HTTPError keeps its own handler and the last
    # one here only sees what nothing else claimed: a bug, answered 500.
    app.add_error_handler(UnknownProduct, _unknown_product)
    app.add_error_handler(ProductUnavailable, _product_unavailable)
    app.add_error_handler(CheckoutNotFound, _checkout_not_found)
    app.add_error_handler(OrderingFailed, _ordering_failed)
    app.add_error_handler(StorageUnavailable, _storage_unavailable)
    app.add_error_handler(Exception, _unexpected)
    app.set_error_serializer(_serialize_error)


def _unknown_product(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Any
) -> None:
    raise falcon.HTTPNotFound(title="Unknown product", description=str(error))


def _product_unavailable(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Any
) -> None:
    raise falcon.HTTPConflict(title="Sold out", description=str(error))


def _checkout_not_found(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Any
) -> None:
    raise falcon.HTTPNotFound(title="Unknown checkout", description=str(error))


def _ordering_failed(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Any
) -> None:
    raise falcon.HTTPServiceUnavailable(
        title="WeChat Pay did not answer",
        description="The order could not be placed; please try again.",
        retry_after=RETRY_AFTER_WECHAT,
    )


def _storage_unavailable(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Any
) -> None:
    log.error("storage unavailable path=%s reason=%s", req.path, error)
    raise falcon.HTTPServiceUnavailable(
        title="Service unavailable",
        description="Please try again in a moment.",
        retry_after=RETRY_AFTER_STORAGE,
    )


def _unexpected(
    req: falcon.Request, resp: falcon.Response, error: Exception, params: Any
) -> None:
    log.error(
        "unexpected error method=%s path=%s",
        req.method,
        req.path,
        exc_info=error,
    )
    raise falcon.HTTPInternalServerError(
        title="Internal error",
        description="Something went wrong on our side.",
    )


def _serialize_error(
    req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError
) -> None:
    """JSON ``{"title", "description"}``; a page for a browser's page load."""
    title = error.title or "Error"
    description = error.description or ""
    wants_page = not req.path.startswith("/api/") and (
        "text/html" in (req.accept or "")
    )
    if wants_page:
        resp.content_type = falcon.MEDIA_HTML
        resp.text = error_page(title, description, base_path(req))
        return
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps({"title": title, "description": description})


# --- the production factory ---------------------------------------------------


def application_from_env() -> WSGIApp:
    """Build the app from ``WXPAY_*`` settings, with the real adapters.

    The app is wrapped in the request-id/metrics middleware and, outside
    that, the trusted-proxy middleware, so that the client address is
    settled before anything logs it.

    Raises:
        StartupError: a setting is missing or wrong; the message names it.
    """
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        configure_logging(os.environ.get("WXPAY_LOG_LEVEL", "INFO"))
        message = f"wxpay: cannot start, configuration error: {error}"
        print(message, file=sys.stderr)
        log.critical("%s", message)
        # NOTE(startup): an ordinary exception, not SystemExit, so that
        # gunicorn counts a failed boot and stops instead of respawning.
        raise StartupError(message) from None
    configure_logging(
        os.environ.get("WXPAY_LOG_LEVEL", "INFO"),
        secrets=[settings.api_key.reveal()],
    )

    log.info(
        "starting mch_id=%s appid=%s sign_type=%s notify_url=%s",
        settings.mch_id,
        settings.appid,
        settings.sign_type.value,
        settings.notify_url,
    )
    return production_stack(create_app(build_service(settings)))


def production_stack(app: WSGIApp, environ: Mapping[str, str] | None = None) -> WSGIApp:
    """Wrap the app in the middleware production runs it with.

    Inside, the request-id/metrics middleware; outside that, the
    trusted-proxy middleware, so that the client address is settled
    before anything logs it. ``application_from_env`` and
    ``WeChatPayMiddleware`` both serve the app through this one function.

    Args:
        app: the Falcon app from :func:`create_app`.
        environ: where to read ``WXPAY_TRUSTED_PROXIES`` (``os.environ``).
    """
    environ = os.environ if environ is None else environ
    # SECURITY(proxy): the same list as gunicorn's forwarded_allow_ips
    # (gunicorn.conf.py) and the proxy in deploy/nginx; see there.
    trusted = parse_trusted(
        environ.get(TRUSTED_PROXIES_VARIABLE, DEFAULT_TRUSTED_PROXIES)
    )
    return TrustedProxyMiddleware(RequestContextMiddleware(app), trusted=trusted)
