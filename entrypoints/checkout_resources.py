"""The JSON API the shop's pages use: products, checkouts, QR images.

Each responder parses, calls one use case and answers; the use cases'
errors (unknown product, WeChat failing, ...) become HTTP answers in
``entrypoints.app``, where the error handlers are registered.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import falcon

from adapters.qr_image import qr_png
from adapters.qr_image import qr_svg
from domain.model import CheckoutMode
from domain.usecases import CheckoutView
from domain.usecases import checkout_status
from domain.usecases import follow_checkout
from domain.usecases import list_products
from domain.usecases import start_checkout
from entrypoints.bodies import read_bounded
from entrypoints.bootstrap import Service
from entrypoints.pages import base_path

MAX_JSON_BYTES = 4 * 1024
# NOTE(qr): a checkout's code never changes once made, but it is a payment
# link for one customer: browsers may keep it, shared caches may not.
QR_CACHE_CONTROL = "private, max-age=600"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def checkout_json(view: CheckoutView) -> dict[str, Any]:
    """The checkout as ``GET /api/checkouts/{id}`` shows it."""
    return {
        "id": view.id,
        "mode": view.mode,
        "status": view.status,
        "qr_content": view.qr_content,
        "out_trade_no": view.out_trade_no,
        "total_fee": view.total_fee,
        "product_id": view.product_id,
        "product_name": view.product_name,
        "expires_at": _iso(view.expires_at),
        "paid_at": _iso(view.paid_at),
    }


def read_json_object(req: falcon.Request) -> dict[str, Any]:
    """Read a small JSON object from the body.

    Raises:
        HTTPUnsupportedMediaType, HTTPContentTooLarge, HTTPBadRequest.
    """
    # SECURITY(api): only application/json is taken, so a cross-site HTML
    # form cannot start checkouts; browsers must preflight such a POST.
    if not req.content_type or req.content_type.split(";")[0].strip() != (
        falcon.MEDIA_JSON
    ):
        raise falcon.HTTPUnsupportedMediaType(
            title="Unsupported media type",
            description="Send the body as application/json.",
        )
    body = read_bounded(req, MAX_JSON_BYTES)
    if len(body) > MAX_JSON_BYTES:
        raise falcon.HTTPContentTooLarge(
            title="Body too large",
            description=f"A request body holds at most {MAX_JSON_BYTES} bytes.",
        )
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        # NOTE(api): "[[[[...]]]]" nested deeply enough exhausts the
        # parser's recursion even within the size limit; it is bad JSON.
        raise falcon.HTTPBadRequest(
            title="Malformed JSON",
            description="The body is not a JSON document.",
        ) from None
    if not isinstance(document, dict):
        raise falcon.HTTPBadRequest(
            title="Malformed request",
            description="The body must be a JSON object.",
        )
    return document


def parse_new_checkout(document: dict[str, Any]) -> tuple[str, CheckoutMode]:
    """Take ``product_id`` and ``mode`` from a new checkout's body.

    Raises:
        HTTPBadRequest: naming the field that is missing or wrong.
    """
    product_id = document.get("product_id")
    if not isinstance(product_id, str) or not product_id:
        raise falcon.HTTPBadRequest(
            title="Invalid product_id",
            description="product_id must be a non-empty string.",
        )
    mode = document.get("mode")
    # NOTE(api): bool is an int in Python; true is not mode 1.
    if type(mode) is not int or mode not in (1, 2):
        raise falcon.HTTPBadRequest(
            title="Invalid mode",
            description="mode must be the number 1 (static QR) or 2 (code_url).",
        )
    return product_id, CheckoutMode(mode)


class ProductsResource:
    """The catalogue: every product with its price in fen."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        products = list_products(self._service.uow_factory())
        resp.media = [
            {"id": p.id, "name": p.name, "price_fen": p.price.value} for p in products
        ]


class CheckoutsResource:
    """Start a checkout: ``{"product_id": "...", "mode": 1 or 2}``.

    Answers 201 with the checkout and its ``Location``.
    """

    def __init__(self, service: Service) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        # NOTE(api): each mode-2 checkout places a WeChat order, so the
        # shipped nginx rules limit POST /api/checkouts per client
        # address (deploy/nginx/wxpay-zones.conf: 1/s, burst 5, then 429).
        # TODO(api): nothing limits it in the app itself, so without that
        # proxy (WeChatPayMiddleware inside another app, or gunicorn
        # reached directly) it is unlimited, and clients behind one NAT
        # address share a bucket; a per-session or global cap on open
        # WeChat orders would need shared state across workers.
        product_id, mode = parse_new_checkout(read_json_object(req))

        service = self._service
        view = start_checkout(
            service.uow_factory(),
            service.gateway,
            service.merchant,
            service.clock,
            product_id,
            mode,
        )

        resp.status = falcon.HTTP_201
        resp.location = f"{base_path(req)}/api/checkouts/{view.id}"
        resp.media = checkout_json(view)


class CheckoutResource:
    """One checkout, as its page follows it until it is paid.

    An order whose notify is minutes late is asked about at WeChat
    first (``follow_checkout``), so the page turns to paid without it.
    """

    def __init__(self, service: Service) -> None:
        self._service = service

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, checkout_id: str
    ) -> None:
        service = self._service
        view = follow_checkout(
            service.uow_factory(),
            service.gateway,
            service.merchant,
            service.clock,
            checkout_id,
        )
        resp.cache_control = ["no-store"]
        resp.media = checkout_json(view)


class CheckoutQrResource:
    """The checkout's QR code, as SVG or PNG."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def on_get_svg(
        self, req: falcon.Request, resp: falcon.Response, checkout_id: str
    ) -> None:
        self._answer(resp, checkout_id, "image/svg+xml", qr_svg)

    def on_get_png(
        self, req: falcon.Request, resp: falcon.Response, checkout_id: str
    ) -> None:
        self._answer(resp, checkout_id, "image/png", qr_png)

    def _answer(
        self,
        resp: falcon.Response,
        checkout_id: str,
        content_type: str,
        render: Callable[[str], bytes],
    ) -> None:
        view = checkout_status(self._service.uow_factory(), checkout_id)
        if not view.qr_content:
            # A mode-2 checkout whose order WeChat did not place.
            raise falcon.HTTPNotFound(
                title="No code",
                description="This checkout has no code; start a new one.",
            )

        resp.content_type = content_type
        resp.cache_control = [QR_CACHE_CONTROL]
        resp.data = render(view.qr_content)
