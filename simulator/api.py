"""WeChat's merchant API, on WeChat's own paths, as Falcon resources.

Every path answers as WeChat does: HTTP 200 and a flat XML body, whatever
went wrong (an injected ``http500`` fault aside). Each resource parses,
authenticates, lets the ledger apply the rule, and maps the outcome to the
two-level answer.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import falcon

from adapters import xml_codec
from domain.signature import SignType
from domain.signature import signed
from simulator import messages
from simulator.delivery import Deliverer
from simulator.state import BusinessFail
from simulator.state import FaultBook
from simulator.state import Ledger
from simulator.state import Merchant
from simulator.state import ProtocolFail

logger = logging.getLogger(__name__)

XML_TYPE = "text/xml; charset=utf-8"


@dataclass(frozen=True)
class Answer:
    """A handler's outcome: fields to sign and send, or a raw body."""

    fields: dict[str, str] | None = None
    raw: bytes = b""
    content_type: str = XML_TYPE


Handler = Callable[[Merchant, SignType, dict[str, str]], Answer]


class WeChatEndpoint:
    """One of WeChat's merchant API paths.

    Args:
        name: the API's name, as faults address it (``unifiedorder``).
        handler: applies the API's rule to an authenticated request.
        needs_appid: False for ``getsignkey``, which carries no appid.
    """

    def __init__(
        self,
        name: str,
        handler: Handler,
        ledger: Ledger,
        faults: FaultBook,
        *,
        needs_appid: bool = True,
    ) -> None:
        self.name = name
        self._handler = handler
        self._ledger = ledger
        self._faults = faults
        self._needs_appid = needs_appid

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fault = self._faults.take(self.name)
        if fault is not None and fault.kind == "http500":
            resp.status = falcon.HTTP_500
            resp.content_type = "text/html"
            resp.data = b"<html><body>500 Internal Server Error</body></html>"
            return
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)

        body = req.bounded_stream.read(xml_codec.DEFAULT_MAX_BYTES + 1)
        try:
            fields = xml_codec.parse(body)
            merchant, sign_type = self._ledger.authenticate(
                fields, needs_appid=self._needs_appid
            )
        except xml_codec.XmlRejected as error:
            self._send(resp, messages.protocol_fail(error.code, str(error)))
            return
        except ProtocolFail as error:
            logger.info("refused api=%s code=%s", self.name, error.code)
            self._send(resp, messages.protocol_fail(error.code, error.message))
            return

        if fault is not None and fault.kind == "SYSTEMERROR":
            # NOTE(simulator): the injected SYSTEMERROR answers before the
            # rule runs, so a retry with identical parameters is safe.
            fail = messages.business_fail(
                merchant, sign_type, "SYSTEMERROR", "系统超时"
            )
            self._send(resp, fail)
            return
        try:
            answer = self._handler(merchant, sign_type, fields)
        except BusinessFail as error:
            logger.info(
                "refused api=%s mch_id=%s err_code=%s",
                self.name,
                merchant.mch_id,
                error.code,
            )
            answer = Answer(
                messages.business_fail(
                    merchant, sign_type, error.code, error.description
                )
            )
        if answer.fields is not None:
            self._send(resp, answer.fields)
        else:
            resp.content_type = answer.content_type
            resp.data = answer.raw

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._send(
            resp, messages.protocol_fail("REQUIRE_POST_METHOD", "请使用post方法")
        )

    on_put = on_patch = on_delete = on_get

    @staticmethod
    def _send(resp: falcon.Response, fields: dict[str, str]) -> None:
        resp.status = falcon.HTTP_200
        resp.content_type = XML_TYPE
        resp.data = xml_codec.write(fields)


class MerchantApi:
    """The rules behind each path, wired to the ledger and the deliverer."""

    def __init__(self, ledger: Ledger, faults: FaultBook, deliverer: Deliverer) -> None:
        self.ledger = ledger
        self.faults = faults
        self.deliverer = deliverer

    def routes(self) -> list[tuple[str, WeChatEndpoint]]:
        table: list[tuple[str, str, Handler]] = [
            ("/pay/unifiedorder", "unifiedorder", self.unified_order),
            ("/pay/orderquery", "orderquery", self.order_query),
            ("/pay/closeorder", "closeorder", self.close_order),
            # TODO(simulator): secapi paths need the merchant's client
            # certificate (mutual TLS); the simulator serves plain HTTP and
            # cannot check it. Add it if the service's TLS set-up needs a test.
            ("/secapi/pay/refund", "refund", self.refund),
            ("/pay/refundquery", "refundquery", self.refund_query),
            ("/pay/downloadbill", "downloadbill", self.download_bill),
            ("/tools/shorturl", "shorturl", self.short_url),
        ]
        routes = [
            (path, WeChatEndpoint(name, handler, self.ledger, self.faults))
            for path, name, handler in table
        ]
        sandbox = WeChatEndpoint(
            "getsignkey",
            self.sandbox_sign_key,
            self.ledger,
            self.faults,
            needs_appid=False,
        )
        routes.append(("/sandboxnew/pay/getsignkey", sandbox))
        return routes

    def unified_order(
        self, merchant: Merchant, sign_type: SignType, fields: dict[str, str]
    ) -> Answer:
        order = self.ledger.unified_order(merchant, sign_type, fields)
        logger.info(
            "unifiedorder mch_id=%s out_trade_no=%s state=%s",
            merchant.mch_id,
            order.out_trade_no,
            order.trade_state,
        )
        extra = messages.order_created(order)
        return Answer(messages.success(merchant, sign_type, extra))

    def order_query(
        self, merchant: Merchant, sign_type: SignType, fields: dict[str, str]
    ) -> Answer:
        order = self.ledger.query(merchant, fields)
        extra = messages.order_queried(order)
        return Answer(messages.success(merchant, sign_type, extra))

    def close_order(
        self, merchant: Merchant, sign_type: SignType, fields: dict[str, str]
    ) -> Answer:
        order = self.ledger.close(merchant, fields)
        logger.info(
            "closeorder mch_id=%s out_trade_no=%s", merchant.mch_id, order.out_trade_no
        )
        return Answer(messages.success(merchant, sign_type, {}))

    def refund(
        self, merchant: Merchant, sign_type: SignType, fields: dict[str, str]
    ) -> Answer:
        order, refund, new = self.ledger.refund(merchant, fields)
        logger.info(
            "refund mch_id=%s out_trade_no=%s out_refund_no=%s new=%s",
            merchant.mch_id,
            order.out_trade_no,
            refund.out_refund_no,
            new,
        )
        if new and refund.notify_url:
            self.deliverer.notify(
                "refund_notify",
                refund.notify_url,
                messages.refund_notify(order, refund),
                out_trade_no=order.out_trade_no,
            )
        extra = messages.refund_fields(order, refund)
        return Answer(messages.success(merchant, sign_type, extra))

    def refund_query(
        self, merchant: Merchant, sign_type: SignType, fields: dict[str, str]
    ) -> Answer:
        order, refunds = self.ledger.refund_query(merchant, fields)
        extra = messages.refund_queried(order, refunds)
        return Answer(messages.success(merchant, sign_type, extra))

    def download_bill(
        self, merchant: Merchant, sign_type: SignType, fields: dict[str, str]
    ) -> Answer:
        if not fields.get("bill_date"):
            return Answer({"return_code": "FAIL", "return_msg": "missing parameter"})
        tar_type = fields.get("tar_type", "")
        if tar_type not in ("", "GZIP"):
            return Answer({"return_code": "FAIL", "return_msg": "invalid tar_type"})
        try:
            payments, refunds = self.ledger.bill(
                merchant, fields["bill_date"], fields.get("bill_type") or "ALL"
            )
        except ProtocolFail as error:
            # NOTE(simulator): bill failures carry only return_msg, in
            # English, as WeChat's do ("No Bill Exist").
            return Answer({"return_code": "FAIL", "return_msg": error.message})
        text = messages.bill_text(payments, refunds).encode("utf-8")
        if tar_type == "GZIP":
            return Answer(raw=gzip.compress(text), content_type="application/x-gzip")
        return Answer(raw=text, content_type="text/plain; charset=utf-8")

    def short_url(
        self, merchant: Merchant, sign_type: SignType, fields: dict[str, str]
    ) -> Answer:
        if not fields.get("long_url"):
            raise BusinessFail("LACK_PARAMS", "缺少参数long_url")
        short = self.ledger.shorten(fields["long_url"])
        return Answer(messages.success(merchant, sign_type, {"short_url": short}))

    def sandbox_sign_key(
        self, merchant: Merchant, sign_type: SignType, fields: dict[str, str]
    ) -> Answer:
        # TODO(simulator): the key is handed out but the /sandboxnew/pay/...
        # paths are not served (WeChat's sandbox no longer runs
        # unifiedorder either); add them if the service ever uses them.
        seed = f"sandbox:{merchant.mch_id}:{merchant.api_key.reveal()}"
        key = hashlib.sha256(seed.encode()).hexdigest()[:32]
        answer = {
            "return_code": "SUCCESS",
            "return_msg": "ok",
            "mch_id": merchant.mch_id,
            "sandbox_signkey": key,
        }
        return Answer(signed(answer, merchant.api_key, sign_type))
