"""The two URLs WeChat posts to: the mode-1 scan callback and the notify.

NOTE(wechat): unlike the JSON API, these resources never let an error
reach the app's error handlers. WeChat reads only HTTP 200 with a
well-formed XML body; a 500 or an HTML page is a failed delivery to it
(the payer sees a timeout, or the notify is resent for a day). So each
resource turns every outcome, a crash included, into its XML answer.
"""

from __future__ import annotations

import logging

import falcon

from adapters import xml_codec
from adapters.prometheus_metrics import CALLBACK_OUTCOMES
from adapters.prometheus_metrics import NOTIFY_VERDICTS
from domain.ports import StorageUnavailable
from domain.usecases import TRY_LATER
from domain.usecases import business_failure
from domain.usecases import handle_payment_notify
from domain.usecases import handle_scan_callback
from domain.usecases import protocol_failure
from entrypoints.bodies import read_bounded
from entrypoints.bootstrap import Service

log = logging.getLogger(__name__)

# XML without a declaration is UTF-8 by definition; no charset needed.
XML_CONTENT_TYPE = "text/xml"
# The one answer that makes WeChat stop resending a notify; byte for byte.
NOTIFY_OK = (
    b"<xml><return_code><![CDATA[SUCCESS]]></return_code>"
    b"<return_msg><![CDATA[OK]]></return_msg></xml>"
)
SYSTEM_ERROR = "SYSTEMERROR"


def read_message(req: falcon.Request, limits: xml_codec.XmlLimits) -> dict[str, str]:
    """Read and parse a WeChat message, never more than the size limit.

    Raises:
        XmlRejected: the body is too large, empty or not a WeChat message.
    """
    # SECURITY(xml): a declared length over the limit is refused unread;
    # one that is absent or lies is bounded by read_bounded, and the codec
    # refuses the extra byte.
    declared = req.content_length
    if declared is not None and declared > limits.max_bytes:
        raise xml_codec.BodyTooLarge(
            f"Content-Length {declared}, the limit is {limits.max_bytes}"
        )
    return xml_codec.parse(read_bounded(req, limits.max_bytes), limits)


def _answer_xml(resp: falcon.Response, body: bytes) -> None:
    resp.status = falcon.HTTP_200
    resp.content_type = XML_CONTENT_TYPE
    resp.data = body


class ScanCallbackResource:
    """WeChat's mode-1 callback: a payer scanned one of our static codes.

    Always answers HTTP 200 with a signed XML reply: ``return_code=FAIL``
    when the message is unusable or forged, ``result_code=FAIL`` with a
    reason the payer reads when the sale cannot go on (unknown product,
    WeChat or storage failing), else the ``prepay_id`` to pay with.
    """

    def __init__(self, service: Service) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        service = self._service
        try:
            fields = read_message(req, service.xml_limits)
            reply = handle_scan_callback(
                service.uow_factory(),
                service.gateway,
                service.merchant,
                service.clock,
                fields,
            )
        except xml_codec.XmlRejected as error:
            log.warning("SECURITY callback refused rule=xml code=%s", error.code)
            reply = protocol_failure(service.merchant, error.code)
            outcome = "xml_rejected"
        except Exception:
            # NOTE(wechat): storage down or a bug; the payer is asked to
            # try again, and the traceback goes to the operator.
            log.exception("callback failed; answered result_code=FAIL")
            reply = business_failure(service.merchant, TRY_LATER)
            outcome = "error"
        else:
            outcome = _callback_outcome(reply)

        CALLBACK_OUTCOMES.labels(outcome).inc()
        log.info(
            "callback answered outcome=%s return_code=%s result_code=%s",
            outcome,
            reply.get("return_code"),
            reply.get("result_code", "-"),
        )
        _answer_xml(resp, xml_codec.write(reply))


def _callback_outcome(reply: dict[str, str]) -> str:
    if reply.get("return_code") != "SUCCESS":
        return "refused"
    if reply.get("result_code") != "SUCCESS":
        return "cannot_sell"
    return "prepay"


class PaymentNotifyResource:
    """WeChat's payment result notify for the orders we placed.

    Answers HTTP 200 with the exact SUCCESS reply once the payment is
    recorded (or was already); any other outcome answers FAIL, which makes
    WeChat send the notify again later.
    """

    def __init__(self, service: Service) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        service = self._service
        try:
            fields = read_message(req, service.xml_limits)
            outcome = handle_payment_notify(
                service.uow_factory(), service.merchant, service.clock, fields
            )
        except xml_codec.XmlRejected as error:
            log.warning("SECURITY notify refused rule=xml code=%s", error.code)
            NOTIFY_VERDICTS.labels("xml_rejected").inc()
            _answer_xml(resp, _notify_fail(error.code))
            return
        except StorageUnavailable:
            log.exception("notify not stored; answered FAIL so WeChat retries")
            NOTIFY_VERDICTS.labels("storage_unavailable").inc()
            _answer_xml(resp, _notify_fail(SYSTEM_ERROR))
            return
        except Exception:
            log.exception("notify failed; answered FAIL so WeChat retries")
            NOTIFY_VERDICTS.labels("error").inc()
            _answer_xml(resp, _notify_fail(SYSTEM_ERROR))
            return

        NOTIFY_VERDICTS.labels(outcome.verdict.value).inc()
        log.info(
            "notify answered out_trade_no=%s verdict=%s",
            outcome.out_trade_no or "-",
            outcome.verdict.value,
        )
        if outcome.verdict.acknowledged:
            _answer_xml(resp, NOTIFY_OK)
        else:
            # NOTE(notify): the verdict's name, not its reason, goes back:
            # the reason may quote what the sender wrote.
            _answer_xml(resp, _notify_fail(outcome.verdict.value))


def _notify_fail(reason: str) -> bytes:
    return xml_codec.write({"return_code": "FAIL", "return_msg": reason})
