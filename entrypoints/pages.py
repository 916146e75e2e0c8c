"""The shop's HTML pages and the static files they load.

Pages are rendered on the server from templates shipped in the package,
so product, price and status show even before the script runs; the
script (``static/app.js``) then follows the checkout without a reload.
"""

from __future__ import annotations

import functools
import html
import json
import string
from importlib import resources

import falcon

from domain.money import Fen
from domain.usecases import CheckoutView
from domain.usecases import checkout_status
from domain.usecases import list_products
from entrypoints.bootstrap import Service

# SECURITY(pages): only our own files, no inline script or style; a value
# that slipped past escaping still could not run.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
STATUS_TEXT = {
    "NOTPAY": ("Waiting for payment", "等待支付"),
    "SUCCESS": ("Paid", "已支付"),
    "REFUND": ("Refunded", "已退款"),
    "CLOSED": ("Closed", "已关闭"),
    "PAYERROR": ("Payment failed", "支付失败"),
    # Not a trade state: the page's own word for a mode-2 code past its
    # expiry, still unpaid.
    "EXPIRED": ("Code expired", "二维码已过期"),
}
# The same words for the script, so they are written in one place.
STATUS_TEXT_JSON = json.dumps(STATUS_TEXT, ensure_ascii=False)
STATIC_TYPES = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
}


def _package_text(folder: str, name: str) -> str:
    return resources.files("entrypoints").joinpath(folder, name).read_text("utf-8")


@functools.cache
def template(name: str) -> string.Template:
    """Load a page template shipped under ``entrypoints/templates``."""
    return string.Template(_package_text("templates", name))


def render(page: string.Template, **values: object) -> str:
    """Fill a template; every value is HTML-escaped here and only here."""
    return page.substitute(
        {name: html.escape(str(value)) for name, value in values.items()}
    )


def price_text(fen: int) -> str:
    """A price as a person reads it: ``¥12.50``. Pages use only this."""
    return f"¥{Fen(fen).to_yuan()}"


def answer_html(resp: falcon.Response, body: str) -> None:
    """Send a page with the headers every page carries."""
    resp.content_type = falcon.MEDIA_HTML
    resp.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    resp.set_header("X-Content-Type-Options", "nosniff")
    resp.set_header("Referrer-Policy", "same-origin")
    resp.text = body


class ShopPage:
    """``GET /``: every product, each with its two ways to pay."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self._page = template("index.html")
        self._item = template("product.html")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        products = list_products(self._service.uow_factory())

        items = [
            render(self._item, id=p.id, name=p.name, price=price_text(p.price.value))
            for p in products
        ]
        if not items:
            items = [
                "<li>No products yet: add one with <code>wxpay product add</code>.</li>"
            ]
        resp.cache_control = ["no-cache"]
        page = self._page.substitute(
            products="\n".join(items), base=html.escape(base_path(req))
        )
        answer_html(resp, page)


class CheckoutPage:
    """``GET /checkout/{id}``: the QR code to scan, then "Paid"."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self._page = template("checkout.html")

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, checkout_id: str
    ) -> None:
        view = checkout_status(self._service.uow_factory(), checkout_id)

        resp.cache_control = ["no-store"]
        answer_html(resp, self._render(view, base_path(req)))

    def _render(self, view: CheckoutView, base: str) -> str:
        english, chinese = STATUS_TEXT.get(view.status, (view.status, ""))
        expires_at = view.expires_at.isoformat() if view.expires_at else ""
        return render(
            self._page,
            id=view.id,
            product_id=view.product_id,
            product_name=view.product_name,
            mode=view.mode,
            status=view.status,
            status_text=english,
            status_text_zh=chinese,
            price=price_text(view.total_fee),
            expires_at=expires_at,
            qr_content=view.qr_content,
            status_labels=STATUS_TEXT_JSON,
            base=base,
        )


class StaticFiles:
    """``GET /static/{name}``: the pages' script and style sheet.

    Only the files named in ``STATIC_TYPES`` exist here; they are read
    once, so no request ever touches the file system.
    """

    def __init__(self) -> None:
        self._files = {
            name: _package_text("static", name).encode("utf-8") for name in STATIC_TYPES
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        body = self._files.get(name)
        if body is None:
            raise falcon.HTTPNotFound(
                title="Not found", description=f"No static file {name!r}."
            )
        resp.content_type = STATIC_TYPES[name]
        resp.set_header("X-Content-Type-Options", "nosniff")
        # NOTE(pages): names carry no version, so browsers revalidate
        # often; the files are small.
        resp.cache_control = ["public", "max-age=300"]
        resp.data = body


class Favicon:
    """``GET /favicon.ico``: none, said quickly, so browsers stop asking."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_204
        resp.cache_control = ["public", "max-age=86400"]


def error_page(title: str, description: str, base: str = "") -> str:
    """A plain error page for a person (the API answers JSON)."""
    return render(
        template("error.html"), title=title, description=description, base=base
    )


def base_path(req: falcon.Request) -> str:
    """Where the service is mounted: ``""``, or a prefix like ``/pay``.

    NOTE(pages): every URL a page or its script builds starts with this
    (``SCRIPT_NAME``), so the pages work under ``WeChatPayMiddleware``'s
    prefix as well as at the root.
    """
    return req.root_path.rstrip("/")
