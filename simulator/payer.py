"""The payer's side: scan QR content, pay, and tell the merchant.

A mode-1 link is checked, then the merchant's callback URL is called and
its reply judged; a mode-2 ``code_url`` resolves to its order. Paying an
order sends the payment notify to its ``notify_url``.
"""

from __future__ import annotations

import logging
from typing import Any

from adapters import xml_codec
from simulator import messages
from simulator.delivery import Deliverer
from simulator.state import CALLBACK_UNREACHABLE
from simulator.state import DEFAULT_OPENID
from simulator.state import PAID
from simulator.state import READY_TO_PAY
from simulator.state import Ledger
from simulator.state import Order
from simulator.state import PayerError

logger = logging.getLogger(__name__)

MODE_TWO_PREFIX = "weixin://wxpay/bizpayurl?pr="


def describe(order: Order) -> dict[str, Any]:
    """An order as the control API shows it (amounts in fen)."""

    def moment(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "appid": order.merchant.appid,
        "mch_id": order.merchant.mch_id,
        "out_trade_no": order.out_trade_no,
        "trade_state": order.trade_state,
        "trade_type": order.trade_type,
        "total_fee": order.total_fee,
        "body": order.body,
        "attach": order.attach,
        "product_id": order.product_id,
        "notify_url": order.notify_url,
        "sign_type": order.sign_type.value,
        "prepay_id": order.prepay_id,
        "code_url": order.code_url,
        "prepay_expires_at": moment(order.prepay_expires_at),
        "created_at": moment(order.created_at),
        "time_expire": moment(order.time_expire),
        "openid": order.openid,
        "transaction_id": order.transaction_id,
        "paid_at": moment(order.paid_at),
        "bank_type": order.bank_type,
        "cash_fee": order.cash_fee,
        "coupon_fee": order.coupon_fee,
        "closed_at": moment(order.closed_at),
        "refunds": [
            {
                "out_refund_no": refund.out_refund_no,
                "refund_id": refund.refund_id,
                "refund_fee": refund.refund_fee,
                "refund_status": refund.refund_status,
                "success_time": moment(refund.success_time),
            }
            for refund in order.refunds
        ],
    }


class Payer:
    """Someone with WeChat on a phone, scanning and paying."""

    def __init__(self, ledger: Ledger, deliverer: Deliverer) -> None:
        self.ledger = ledger
        self.deliverer = deliverer

    def scan(
        self,
        qr: str,
        *,
        openid: str = "",
        pay: bool = False,
        coupon_fee: int = 0,
        twice: bool = False,
    ) -> dict[str, Any]:
        """Scan QR content; with ``pay``, also pay what it leads to."""
        qr = qr.strip()
        openid = openid or DEFAULT_OPENID
        try:
            if qr.startswith(MODE_TWO_PREFIX):
                order = self.ledger.resolve_code_url(qr)
                mode = 2
            else:
                order = self._call_merchant(qr, openid)
                mode = 1
        except PayerError as error:
            logger.info(
                "scan refused message=%s detail=%r", error.message, error.detail
            )
            return {"ok": False, "message": error.message, "detail": error.detail}

        if pay:
            result = self.pay(
                order.out_trade_no,
                mch_id=order.merchant.mch_id,
                coupon_fee=coupon_fee,
                openid=openid,
                twice=twice,
            )
            return {**result, "mode": mode}
        return {
            "ok": True,
            "message": READY_TO_PAY,
            "mode": mode,
            "out_trade_no": order.out_trade_no,
            "prepay_id": order.prepay_id,
            "trade_state": order.trade_state,
            "total_fee": order.total_fee,
            "order": describe(order),
        }

    def pay(
        self,
        out_trade_no: str,
        *,
        mch_id: str = "",
        coupon_fee: int = 0,
        openid: str = "",
        bank_type: str = "OTHERS",
        twice: bool = False,
        fail: bool = False,
    ) -> dict[str, Any]:
        """Pay an order (or fail it with PAYERROR) and send the notify.

        Args:
            twice: deliver the notify twice at once.
            fail: the bank refuses; the order becomes PAYERROR.
        """
        try:
            order = self.ledger.pay(
                out_trade_no,
                mch_id=mch_id,
                coupon_fee=coupon_fee,
                openid=openid,
                bank_type=bank_type,
                fail=fail,
            )
        except KeyError:
            return {"ok": False, "message": "订单不存在", "detail": "no such order"}
        except PayerError as error:
            return {"ok": False, "message": error.message, "detail": error.detail}
        logger.info(
            "paid out_trade_no=%s state=%s transaction_id=%s",
            order.out_trade_no,
            order.trade_state,
            order.transaction_id,
        )
        if order.trade_state == "SUCCESS":
            self.deliverer.notify(
                "notify",
                order.notify_url,
                messages.payment_notify(order),
                out_trade_no=order.out_trade_no,
                twice=twice,
            )
            message = PAID
        else:
            message = "支付失败"
        return {
            "ok": order.trade_state == "SUCCESS",
            "message": message,
            "out_trade_no": order.out_trade_no,
            "prepay_id": order.prepay_id,
            "trade_state": order.trade_state,
            "transaction_id": order.transaction_id,
            "total_fee": order.total_fee,
            "order": describe(order),
        }

    def _call_merchant(self, qr: str, openid: str) -> Order:
        merchant, product_id = self.ledger.check_bizpayurl(qr)
        if not merchant.callback_url:
            raise PayerError(CALLBACK_UNREACHABLE, "no callback URL is configured")
        fields = messages.callback_request(merchant, product_id, openid)
        body = xml_codec.write(fields)
        reply = self.deliverer.post(merchant.callback_url, body)

        if reply.status != 200:
            message = CALLBACK_UNREACHABLE
            verdict = reply.error or f"HTTP {reply.status}"
            order = None
        else:
            try:
                parsed: dict[str, str] | None = xml_codec.parse(reply.body)
                problem = ""
            except xml_codec.XmlRejected as error:
                parsed, problem = None, f"not WeChat XML: {error}"
            judged = self.ledger.judge_callback(
                merchant, product_id, openid, parsed, problem
            )
            message, verdict, order = judged.message, judged.verdict, judged.order
        self.deliverer.log.add(
            kind="callback",
            url=merchant.callback_url,
            request=body.decode(),
            status=reply.status,
            reply=reply.body.decode("utf-8", "replace"),
            verdict=f"{message}: {verdict}" if order is None else verdict,
            accepted=order is not None,
            attempt=1,
            out_trade_no=order.out_trade_no if order else "",
        )
        if order is None:
            raise PayerError(message, verdict)
        return order
