"""The payer's JSON control API under ``/control``, and a one-page UI.

Resources parse JSON, call the payer or the ledger, and answer JSON. Bad
input is a 400 with a ``description`` that names the field.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import falcon

from simulator.delivery import DeliveryLog
from simulator.payer import Payer
from simulator.payer import describe
from simulator.state import FAULT_APIS
from simulator.state import FAULT_KINDS
from simulator.state import Clock
from simulator.state import FaultBook
from simulator.state import Ledger


def _media(req: falcon.Request) -> dict[str, Any]:
    data = req.get_media(default_when_empty={})
    if not isinstance(data, dict):
        raise falcon.HTTPBadRequest(
            title="Bad JSON", description="the body must be a JSON object"
        )
    return data


def _text(data: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = data.get(name, "")
    if not isinstance(value, str) or (required and not value):
        raise falcon.HTTPBadRequest(
            title="Bad field", description=f"{name} must be a non-empty string"
        )
    return value


def _int(data: dict[str, Any], name: str, default: int = 0) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise falcon.HTTPBadRequest(
            title="Bad field", description=f"{name} must be a non-negative integer"
        )
    return value


def _number(data: dict[str, Any], name: str, default: float = 0.0) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise falcon.HTTPBadRequest(
            title="Bad field", description=f"{name} must be a non-negative number"
        )
    return float(value)


def _flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise falcon.HTTPBadRequest(
            title="Bad field", description=f"{name} must be true or false"
        )
    return value


class ScanResource:
    """``POST /control/scan``: scan QR content, optionally pay at once."""

    def __init__(self, payer: Payer) -> None:
        self._payer = payer

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = _media(req)
        resp.media = self._payer.scan(
            _text(data, "qr", required=True),
            openid=_text(data, "openid"),
            pay=_flag(data, "pay"),
            coupon_fee=_int(data, "coupon_fee"),
            twice=_flag(data, "duplicate"),
        )


class PayResource:
    """``POST /control/pay``: pay an order by out_trade_no or by QR."""

    def __init__(self, payer: Payer) -> None:
        self._payer = payer

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = _media(req)
        if data.get("qr"):
            resp.media = self._payer.scan(
                _text(data, "qr"),
                openid=_text(data, "openid"),
                pay=True,
                coupon_fee=_int(data, "coupon_fee"),
                twice=_flag(data, "duplicate"),
            )
            return
        resp.media = self._payer.pay(
            _text(data, "out_trade_no", required=True),
            mch_id=_text(data, "mch_id"),
            coupon_fee=_int(data, "coupon_fee"),
            openid=_text(data, "openid"),
            bank_type=_text(data, "bank_type") or "OTHERS",
            twice=_flag(data, "duplicate"),
            fail=_flag(data, "fail"),
        )


class FaultsResource:
    """``/control/faults``: queue (POST), list (GET) or clear (DELETE)."""

    def __init__(self, faults: FaultBook) -> None:
        self._faults = faults

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"faults": [vars(fault) for fault in self._faults.pending()]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = _media(req)
        kind = _text(data, "kind", required=True)
        api = _text(data, "api")
        try:
            fault = self._faults.add(
                api,
                kind,
                count=_int(data, "count", 1),
                delay=_number(data, "delay"),
            )
        except ValueError as error:
            raise falcon.HTTPBadRequest(
                title="Bad fault", description=str(error)
            ) from None
        resp.status = falcon.HTTP_201
        resp.media = {"ok": True, "fault": vars(fault)}

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._faults.clear()
        resp.media = {"ok": True}


class ClockResource:
    """``/control/clock``: read (GET) or advance (POST) simulated time."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._state()

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._clock.advance(_number(_media(req), "advance"))
        resp.media = self._state()

    def _state(self) -> dict[str, Any]:
        return {
            "now": self._clock.now().isoformat(),
            "offset_seconds": self._clock.offset.total_seconds(),
        }


class OrdersResource:
    """``GET /control/orders`` and ``GET /control/orders/{out_trade_no}``."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        orders = self._ledger.orders()
        resp.media = {"orders": [describe(order) for order in orders]}

    def on_get_one(
        self, req: falcon.Request, resp: falcon.Response, out_trade_no: str
    ) -> None:
        mch_id = req.get_param("mch_id") or ""
        try:
            order = self._ledger.find_order(out_trade_no, mch_id)
        except KeyError:
            raise falcon.HTTPNotFound(
                title="No such order", description=f"out_trade_no={out_trade_no}"
            ) from None
        resp.media = describe(order)


class LogResource:
    """``GET /control/log``: every callback and notify delivered."""

    def __init__(self, log: DeliveryLog) -> None:
        self._log = log

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        kind = req.get_param("kind") or ""
        since = req.get_param_as_int("since", min_value=0) or 0
        entries = self._log.entries(kind, since)
        resp.media = {"entries": [entry.to_json() for entry in entries]}


class MerchantsResource:
    """``GET /control/merchants``: who the simulator serves (no keys)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {
            "merchants": [
                {
                    "appid": merchant.appid,
                    "mch_id": merchant.mch_id,
                    "sign_type": merchant.sign_type.value,
                    "callback_url": merchant.callback_url,
                }
                for merchant in self._ledger.merchants.values()
            ]
        }


class ResetResource:
    """``POST /control/reset``: forget orders, faults, log and clock offset."""

    def __init__(self, reset: Callable[[], None]) -> None:
        self._reset = reset

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._reset()
        resp.media = {"ok": True}


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WeChat Pay simulator</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .6em}}</style>
</head><body>
<h1>WeChat Pay simulator</h1>
<p>{notice}</p>
<form method="post" action="/ui/scan">
<label>QR content <input name="qr" size="70" required></label>
<button type="submit">Scan and pay</button></form>
<h2>Orders</h2>
<table><tr><th>out_trade_no</th><th>mch_id</th><th>fen</th><th>state</th>
<th>product</th><th></th></tr>
{rows}
</table>
<p>APIs: {apis}. Faults: {kinds}.</p>
</body></html>
"""

ROW = """<tr><td>{out_trade_no}</td><td>{mch_id}</td><td>{total_fee}</td>
<td>{trade_state}</td><td>{product_id}</td><td>{action}</td></tr>"""

PAY_BUTTON = """<form method="post" action="/ui/pay">
<input type="hidden" name="out_trade_no" value="{out_trade_no}">
<input type="hidden" name="mch_id" value="{mch_id}">
<button type="submit">Pay</button></form>"""


class PageResource:
    """``GET /``: orders with a Pay button each, and a scan form."""

    def __init__(self, ledger: Ledger, payer: Payer) -> None:
        self._ledger = ledger
        self._payer = payer

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        rows = []
        for order in self._ledger.orders():
            values = {
                "out_trade_no": html.escape(order.out_trade_no),
                "mch_id": html.escape(order.merchant.mch_id),
                "total_fee": order.total_fee,
                "trade_state": order.trade_state,
                "product_id": html.escape(order.product_id),
            }
            pays = order.trade_state == "NOTPAY"
            action = PAY_BUTTON.format(**values) if pays else ""
            rows.append(ROW.format(action=action, **values))
        notice = html.escape(req.get_param("notice") or "")
        resp.content_type = falcon.MEDIA_HTML
        resp.text = PAGE.format(
            notice=notice,
            rows="\n".join(rows),
            apis=", ".join(FAULT_APIS),
            kinds=", ".join(FAULT_KINDS),
        )

    def on_post_pay(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = self._form(req)
        result = self._payer.pay(
            form.get("out_trade_no", ""), mch_id=form.get("mch_id", "")
        )
        self._back(resp, result)

    def on_post_scan(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = self._form(req)
        self._back(resp, self._payer.scan(form.get("qr", ""), pay=True))

    @staticmethod
    def _form(req: falcon.Request) -> dict[str, str]:
        body = req.bounded_stream.read(16 * 1024).decode("utf-8", "replace")
        return {name: values[0] for name, values in parse_qs(body).items()}

    @staticmethod
    def _back(resp: falcon.Response, result: dict[str, Any]) -> None:
        notice = f"{result['message']} {result.get('out_trade_no', '')}".strip()
        raise falcon.HTTPSeeOther("/?" + falcon.to_query_str({"notice": notice})[1:])
