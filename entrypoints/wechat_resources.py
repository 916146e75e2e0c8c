"""The two URLs WeChat posts to: the mode-1 scan callback and the notify.

NOTE(wechat): unlike the JSON API, these resources never let an error
reach the app's error handlers. WeChat reads only HTTP 200 with a
well-formed XML body; a 500 or an HTML page is a failed delivery to it
(the payer sees a timeout, or the notify is resent for a day). So each
resource turns every outcome, a crash included, into its XML answer.
"""

from __future__ import annotations

import logging
from datetime import datetime

import falcon

from adapters import xml_codec
from adapters.prometheus_metrics import CALLBACK_OUTCOMES
from adapters.prometheus_metrics import NOTIFY_VERDICTS
from domain.ports import InboundMessage
from domain.ports import StorageUnavailable
from domain.usecases import TRY_LATER
from domain.usecases import NotifyVerdict
from domain.usecases import ScanVerdict
from domain.usecases import business_failure
from domain.usecases import handle_payment_notify
from domain.usecases import handle_scan_callback
from domain.usecases import protocol_failure
from entrypoints.bodies import read_bounded
from entrypoints.bootstrap import Service
from entrypoints.observability import REQUEST_ID_ENVIRON

log = logging.getLogger(__name__)

# XML without a declaration is UTF-8 by definition; no charset needed.
XML_CONTENT_TYPE = "text/xml"
# The one answer that makes WeChat stop resending a notify; byte for byte.
NOTIFY_OK = (
    b"<xml><return_code><![CDATA[SUCCESS]]></return_code>"
    b"<return_msg><![CDATA[OK]]></return_msg></xml>"
)
SYSTEM_ERROR = "SYSTEMERROR"

# The audit trail's kinds, and the verdicts an entrypoint adds to the use
# cases' own (NotifyVerdict, ScanVerdict).
NOTIFY = "notify"
CALLBACK = "callback"
XML_REJECTED = "xml_rejected"
STORAGE_UNAVAILABLE = "storage_unavailable"
ERROR = "error"
# The widths of the audit trail's verdict and out_trade_no columns.
AUDIT_FIELD_LIMIT = 32
# SECURITY(audit): anyone can post to the WeChat URLs, so a message
# refused before its signature was checked keeps only this many bytes:
# enough to see what a forger tried, too little to fill the disk with.
UNVERIFIED_BODY_LIMIT = 2 * 1024
# The verdicts given only after the signature checked out; any other
# (bad_sign, xml_rejected:*, error, or one added later) counts as from a
# stranger. Both use cases check the signature first, so every verdict
# but BAD_SIGN comes after it; a storage failure can only follow it.
VERIFIED_VERDICTS = frozenset(
    {v.value for v in NotifyVerdict if v is not NotifyVerdict.BAD_SIGN}
    | {v.value for v in ScanVerdict if v is not ScanVerdict.BAD_SIGN}
    | {STORAGE_UNAVAILABLE}
)


def read_body(req: falcon.Request, limits: xml_codec.XmlLimits) -> bytes:
    """Read a WeChat message's raw body, never more than the size limit.

    Returns at most ``limits.max_bytes + 1`` bytes, which the codec then
    refuses as too large.

    Raises:
        BodyTooLarge: the declared length is over the limit (unread).
    """
    # SECURITY(xml): a declared length over the limit is refused unread;
    # one that is absent or lies is bounded by read_bounded, and the codec
    # refuses the extra byte.
    declared = req.content_length
    if declared is not None and declared > limits.max_bytes:
        raise xml_codec.BodyTooLarge(
            f"Content-Length {declared}, the limit is {limits.max_bytes}"
        )
    return read_bounded(req, limits.max_bytes)


def _answer_xml(resp: falcon.Response, body: bytes) -> None:
    resp.status = falcon.HTTP_200
    resp.content_type = XML_CONTENT_TYPE
    resp.data = body


def audited_body(raw: bytes, verdict: str) -> str:
    """The body as the audit trail keeps it: whole, or cut if unverified.

    A message whose signature checked out is kept whole (the parser
    never reads more than the XML size limit). Any other keeps its first
    ``UNVERIFIED_BODY_LIMIT`` bytes, marked ``…[truncated N bytes]``
    with N the bytes read but dropped. Bytes that are not UTF-8 are
    decoded with replacement, so any message can be kept.
    """
    if verdict in VERIFIED_VERDICTS or len(raw) <= UNVERIFIED_BODY_LIMIT:
        return raw.decode("utf-8", errors="replace")
    kept = raw[:UNVERIFIED_BODY_LIMIT].decode("utf-8", errors="replace")
    return f"{kept}…[truncated {len(raw) - UNVERIFIED_BODY_LIMIT} bytes]"


def record_inbound(
    service: Service,
    req: falcon.Request,
    *,
    kind: str,
    received_at: datetime,
    raw: bytes,
    verdict: str,
    out_trade_no: str = "",
) -> None:
    """Keep the raw message and its verdict in the audit trail.

    Called by both WeChat resources once their reply is decided, in a
    unit of work of its own, so a refused message is kept as well as an
    accepted one. See ``audited_body`` for how much of the body is kept.

    NOTE(audit): a failing audit write is logged at ERROR and otherwise
    ignored: the reply WeChat gets depends on the payment, never on the
    audit trail.

    Args:
        received_at: when the request arrived, read before handling it,
            so the trail lists messages in arrival order even when one
            took seconds (a slow unifiedorder inside a callback).
    """
    # TODO(audit): the write happens before the reply is sent, so on a
    # busy SQLite file it can spend up to the 5 s busy timeout of the
    # callback's time budget; move it after the response (falcon's
    # resp.schedule) if callback latency ever shows it.
    try:
        limit = service.xml_limits.max_bytes
        message = InboundMessage(
            kind=kind,
            received_at=received_at,
            verdict=verdict[:AUDIT_FIELD_LIMIT],
            body=audited_body(raw[:limit], verdict),
            # SECURITY(audit): out_trade_no is whatever the sender wrote;
            # it is cut to the column's size, the whole stays in the body.
            out_trade_no=out_trade_no[:AUDIT_FIELD_LIMIT],
            remote_addr=(req.remote_addr or "")[:64],
            request_id=str(req.env.get(REQUEST_ID_ENVIRON, ""))[:64],
        )
        with service.uow_factory() as uow:
            uow.inbound.record(message)
            uow.commit()
    except Exception:
        # NOTE(audit): nothing here may change what WeChat is answered.
        log.exception(
            "audit trail not written kind=%s verdict=%s out_trade_no=%s",
            kind,
            verdict,
            out_trade_no or "-",
        )


class ScanCallbackResource:
    """WeChat's mode-1 callback: a payer scanned one of our static codes.

    Always answers HTTP 200 with a signed XML reply: ``return_code=FAIL``
    when the message is unusable or forged, ``result_code=FAIL`` with a
    reason the payer reads when the sale cannot go on (unknown product,
    WeChat or storage failing), else the ``prepay_id`` to pay with. Every
    callback goes to the audit trail with its verdict.
    """

    def __init__(self, service: Service) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        service = self._service
        received_at = service.clock.now()
        raw = b""
        out_trade_no = ""
        try:
            raw = read_body(req, service.xml_limits)
            fields = xml_codec.parse(raw, service.xml_limits)
            outcome = handle_scan_callback(
                service.uow_factory(),
                service.gateway,
                service.merchant,
                service.clock,
                fields,
            )
        except xml_codec.XmlRejected as error:
            log.warning("SECURITY callback refused rule=xml code=%s", error.code)
            reply = protocol_failure(service.merchant, error.code)
            metric, verdict = XML_REJECTED, f"{XML_REJECTED}:{error.code}"
        except Exception:
            # NOTE(wechat): storage down or a bug; the payer is asked to
            # try again, and the traceback goes to the operator.
            log.exception("callback failed; answered result_code=FAIL")
            reply = business_failure(service.merchant, TRY_LATER)
            metric = verdict = ERROR
        else:
            reply = outcome.reply
            metric = verdict = outcome.verdict.value
            out_trade_no = outcome.out_trade_no

        CALLBACK_OUTCOMES.labels(metric).inc()
        log.info(
            "callback answered verdict=%s out_trade_no=%s return_code=%s"
            " result_code=%s",
            verdict,
            out_trade_no or "-",
            reply.get("return_code"),
            reply.get("result_code", "-"),
        )
        record_inbound(
            service,
            req,
            kind=CALLBACK,
            received_at=received_at,
            raw=raw,
            verdict=verdict,
            out_trade_no=out_trade_no,
        )
        _answer_xml(resp, xml_codec.write(reply))


class PaymentNotifyResource:
    """WeChat's payment result notify for the orders we placed.

    Answers HTTP 200 with the exact SUCCESS reply once the payment is
    recorded (or was already); any other outcome answers FAIL, which makes
    WeChat send the notify again later. Every notify goes to the audit
    trail with its verdict.
    """

    def __init__(self, service: Service) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        service = self._service
        received_at = service.clock.now()
        raw = b""
        fields: dict[str, str] = {}
        try:
            raw = read_body(req, service.xml_limits)
            fields = xml_codec.parse(raw, service.xml_limits)
            outcome = handle_payment_notify(
                service.uow_factory(), service.merchant, service.clock, fields
            )
        except xml_codec.XmlRejected as error:
            log.warning("SECURITY notify refused rule=xml code=%s", error.code)
            metric, verdict = XML_REJECTED, f"{XML_REJECTED}:{error.code}"
            answer = _notify_fail(error.code)
        except StorageUnavailable:
            log.exception("notify not stored; answered FAIL so WeChat retries")
            metric = verdict = STORAGE_UNAVAILABLE
            answer = _notify_fail(SYSTEM_ERROR)
        except Exception:
            log.exception("notify failed; answered FAIL so WeChat retries")
            metric = verdict = ERROR
            answer = _notify_fail(SYSTEM_ERROR)
        else:
            metric = verdict = outcome.verdict.value
            log.info(
                "notify answered out_trade_no=%s verdict=%s",
                outcome.out_trade_no or "-",
                verdict,
            )
            if outcome.verdict.acknowledged:
                answer = NOTIFY_OK
            else:
                # NOTE(notify): the verdict's name, not its reason, goes
                # back: the reason may quote what the sender wrote.
                answer = _notify_fail(verdict)

        NOTIFY_VERDICTS.labels(metric).inc()
        record_inbound(
            service,
            req,
            kind=NOTIFY,
            received_at=received_at,
            raw=raw,
            verdict=verdict,
            out_trade_no=fields.get("out_trade_no", ""),
        )
        _answer_xml(resp, answer)


def _notify_fail(reason: str) -> bytes:
    return xml_codec.write({"return_code": "FAIL", "return_msg": reason})
