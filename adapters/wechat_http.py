"""The WeChat Pay v2 gateway over urllib3: signed XML out, verified XML in.

Every call is one ``POST {api_base}/pay/<api>`` with a signed XML body.
Each answer is read with WeChat's two-level model: ``return_code`` (did the
request get through) and then, on a signed answer only, ``result_code``
(did the business operation succeed). Nothing in an answer is used before
its signature holds and its ``appid``/``mch_id`` are ours.

Retries happen in one place, ``_send_with_retries``, under one wall-clock
budget per call (``deadline``), so a caller on the mode-1 callback path
always gets an answer or an error within a few seconds.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import urllib3
from urllib3.exceptions import HTTPError
from urllib3.exceptions import SSLError

from adapters import xml_codec
from adapters.prometheus_metrics import WECHAT_CALLS
from adapters.prometheus_metrics import WECHAT_LATENCY
from domain.merchant import Merchant
from domain.model import FEE_TYPE
from domain.money import Fen
from domain.money import InvalidAmount
from domain.ports import BadResponseSignature
from domain.ports import GatewayError
from domain.ports import OrderAlreadyPaid
from domain.ports import OrderClosed
from domain.ports import OrderNotFound
from domain.ports import OrderStatus
from domain.ports import PaymentGateway
from domain.ports import Prepay
from domain.ports import UnexpectedResponse
from domain.ports import UnifiedOrderRequest
from domain.ports import WeChatRejected
from domain.ports import WeChatUnavailable
from domain.signature import SIGN_TYPE_FIELD
from domain.signature import SignType
from domain.signature import check_signature
from domain.signature import signed

log = logging.getLogger(__name__)

UNIFIEDORDER: Final = "unifiedorder"
ORDERQUERY: Final = "orderquery"
CLOSEORDER: Final = "closeorder"

_HEADERS: Final = {
    "Content-Type": "text/xml; charset=utf-8",
    "Accept": "text/xml, application/xml",
    "User-Agent": "wxpay-native/0.1 urllib3",
}

# err_code values after which WeChat asks for the same call again, with
# identical parameters (reference §7.2).
_RETRY_CODES: Final = frozenset({"SYSTEMERROR", "BIZERR_NEED_RETRY"})
_TYPED_REJECTIONS: Final[dict[str, type[WeChatRejected]]] = {
    "ORDERPAID": OrderAlreadyPaid,
    "ORDERCLOSED": OrderClosed,
    "ORDERNOTEXIST": OrderNotFound,
}
# Statuses that say "WeChat's side is busy or down", not "you asked wrong".
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_MAX_LOGGED_BODY: Final = 4000
_MAX_MESSAGE_TEXT: Final = 200


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before repeating a call.

    The wait before retry ``n`` (1-based) is ``base_delay * 2 ** (n - 1)``
    capped at ``max_delay``, of which a random half is kept ("equal
    jitter": never zero, never in lock-step with other clients). No wait
    and no attempt goes past the call's deadline; an attempt is only
    started with at least ``min_attempt_time`` seconds left.
    """

    max_attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 1.0
    min_attempt_time: float = 0.1

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")

    def delay(self, retry: int) -> float:
        """Return the wait in seconds before retry number ``retry``."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return ceiling / 2 + random.uniform(0.0, ceiling / 2)


class _Retryable(Exception):
    """One attempt failed in a way that the same request may fix."""

    def __init__(self, error: WeChatUnavailable, outcome: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.outcome = outcome


class Urllib3WeChatGateway(PaymentGateway):
    """Talk to WeChat Pay v2 over one pooled, kept-alive urllib3 manager.

    Args:
        merchant: who signs the requests and whose ids answers must carry.
        api_base: ``https://api.mch.weixin.qq.com`` in production; a local
            ``http://`` URL for the simulator and tests.
        connect_timeout: seconds to open a connection, per attempt.
        read_timeout: seconds to wait for the answer, per attempt.
        deadline: seconds of wall time for the whole call, retries and
            waits included; later attempts get shorter timeouts.
        max_attempts: attempts per call, the first one included.
        pool: a manager to share; by default the gateway makes its own.
    """

    def __init__(
        self,
        merchant: Merchant,
        api_base: str,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 3.0,
        deadline: float = 4.5,
        max_attempts: int = 3,
        pool: urllib3.PoolManager | None = None,
    ) -> None:
        if not api_base.startswith(("https://", "http://")):
            raise ValueError(
                f"api_base must be an http(s) URL such as"
                f" https://api.mch.weixin.qq.com, got {api_base!r}"
            )
        if min(connect_timeout, read_timeout, deadline) <= 0:
            raise ValueError("timeouts and deadline must be positive")
        self._merchant = merchant
        self._api_base = api_base.rstrip("/")
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._deadline = deadline
        self._policy = RetryPolicy(max_attempts=max_attempts)
        self._owns_pool = pool is None
        # NOTE(gateway): urllib3 itself never retries or follows redirects
        # here (retries=False). Its Retry would need allowed_methods to
        # include POST, which it leaves out by default as unsafe to repeat;
        # more to the point, its waits and per-attempt timeouts cannot see
        # our per-call deadline. _send_with_retries does that job instead.
        self._pool = pool or urllib3.PoolManager(
            num_pools=2,
            maxsize=8,
            block=False,
            retries=False,
        )

    def close(self) -> None:
        """Close the pooled connections, if this gateway made the pool."""
        if self._owns_pool:
            self._pool.clear()

    # --- the port ---------------------------------------------------------

    def unified_order(self, request: UnifiedOrderRequest) -> Prepay:
        """Place a NATIVE order and return its ``prepay_id``/``code_url``.

        Placing the same order again (same ``out_trade_no``, identical
        parameters) is WeChat's documented re-entry and is safe.
        """
        fields = {
            "body": request.body,
            "out_trade_no": request.out_trade_no,
            "total_fee": str(request.total_fee.value),
            "spbill_create_ip": request.client_ip,
            "notify_url": request.notify_url,
            "trade_type": "NATIVE",
            "product_id": request.product_id,
            "openid": request.openid,
            "time_expire": request.time_expire,
        }
        answer = self._call(UNIFIEDORDER, request.out_trade_no, fields)

        trade_type = answer.get("trade_type", "NATIVE")
        if trade_type != "NATIVE":
            raise self._unexpected(
                UNIFIEDORDER,
                request.out_trade_no,
                f"asked for a NATIVE order, got trade_type={trade_type}",
            )
        prepay_id = answer.get("prepay_id", "")
        code_url = answer.get("code_url", "")
        if not prepay_id or not code_url:
            missing = "prepay_id" if not prepay_id else "code_url"
            raise self._unexpected(
                UNIFIEDORDER,
                request.out_trade_no,
                f"a successful unifiedorder answer without {missing}",
            )
        return Prepay(prepay_id=prepay_id, code_url=code_url)

    def query_order(self, out_trade_no: str) -> OrderStatus:
        """Return WeChat's view of the order ``out_trade_no``."""
        answer = self._call(ORDERQUERY, out_trade_no, {"out_trade_no": out_trade_no})

        trade_state = answer.get("trade_state", "")
        if not trade_state:
            raise self._unexpected(
                ORDERQUERY, out_trade_no, "an orderquery answer without trade_state"
            )
        total_fee: Fen | None = None
        if answer.get("total_fee"):
            try:
                total_fee = Fen.parse(answer["total_fee"])
            except InvalidAmount:
                raise self._unexpected(
                    ORDERQUERY, out_trade_no, "total_fee is not an amount in fen"
                ) from None
        return OrderStatus(
            out_trade_no=out_trade_no,
            trade_state=trade_state,
            total_fee=total_fee,
            transaction_id=answer.get("transaction_id", ""),
            time_end=answer.get("time_end", ""),
            fee_type=answer.get("fee_type") or FEE_TYPE,
        )

    def close_order(self, out_trade_no: str) -> None:
        """Close the order; ``OrderAlreadyPaid`` means it must not be."""
        self._call(CLOSEORDER, out_trade_no, {"out_trade_no": out_trade_no})

    # --- one call: build, send with retries, log --------------------------

    def _call(
        self, api: str, out_trade_no: str, business: Mapping[str, str]
    ) -> dict[str, str]:
        merchant = self._merchant
        fields = {
            "appid": merchant.appid,
            "mch_id": merchant.mch_id,
            "nonce_str": secrets.token_hex(16),
            **business,
        }
        if merchant.sign_type is SignType.HMAC_SHA256:
            # NOTE(gateway): WeChat signs its answer with the request's
            # sign_type; without this field it would assume MD5.
            fields[SIGN_TYPE_FIELD] = merchant.sign_type.value
        # Built once: every retry sends these exact bytes (re-entry rule).
        body = xml_codec.write(signed(fields, merchant.api_key, merchant.sign_type))

        started = time.monotonic()
        attempts = 0
        outcome = "ERROR"
        try:
            answer, attempts = self._send_with_retries(api, out_trade_no, body, started)
            outcome = "SUCCESS"
            return answer
        except _GatewayFailure as failure:
            attempts, outcome = failure.attempts, failure.outcome
            raise failure.error from failure.error.__cause__
        finally:
            elapsed = time.monotonic() - started
            # NOTE(metrics): counted here, once per call whatever its end,
            # with the same result word as the log line (SUCCESS or the
            # err_code or failure kind); retries are inside one call.
            WECHAT_CALLS.labels(api, outcome).inc()
            WECHAT_LATENCY.labels(api).observe(elapsed)
            log.info(
                "wechat call api=%s out_trade_no=%s result=%s attempts=%d"
                " elapsed_ms=%d",
                api,
                out_trade_no,
                outcome,
                attempts,
                elapsed * 1000,
            )

    def _send_with_retries(
        self, api: str, out_trade_no: str, body: bytes, started: float
    ) -> tuple[dict[str, str], int]:
        """Send ``body`` until an answer is final, or attempts or time end.

        SECURITY(gateway): repeating is safe for every call this gateway
        makes: unifiedorder with an identical body is WeChat's documented
        re-entry (same out_trade_no, same parameters), orderquery only
        reads, and closeorder on a closed order only answers ORDERCLOSED.
        A refund would be safe only with the same out_refund_no; add one
        here only on that condition.
        """
        policy = self._policy
        deadline = started + self._deadline
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._attempt(api, out_trade_no, body, deadline), attempt
            except _Retryable as failed:
                last = failed
            except GatewayError as error:
                raise _GatewayFailure(error, attempt, _outcome(error)) from None

            if attempt >= policy.max_attempts:
                raise _GatewayFailure(last.error, attempt, last.outcome)
            wait = policy.delay(attempt)
            left = deadline - time.monotonic() - wait
            if left < policy.min_attempt_time:
                raise _GatewayFailure(last.error, attempt, last.outcome)
            log.debug(
                "wechat retry api=%s out_trade_no=%s attempt=%d reason=%s wait_ms=%d",
                api,
                out_trade_no,
                attempt,
                last.outcome,
                wait * 1000,
            )
            time.sleep(wait)

    # --- one attempt -------------------------------------------------------

    def _attempt(
        self, api: str, out_trade_no: str, body: bytes, deadline: float
    ) -> dict[str, str]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Retryable(
                self._unavailable(api, out_trade_no, "no time left"), "TIMEOUT"
            )
        # TODO(gateway): urllib3's read timeout bounds each socket read, not
        # the whole answer, so a server trickling bytes could outlast the
        # deadline; read in chunks against the deadline if that is ever
        # seen. Failover to api2.mch.weixin.qq.com is not done either; add
        # it when the service runs outside a single region.
        timeout = urllib3.Timeout(
            total=left,
            connect=min(self._connect_timeout, left),
            read=min(self._read_timeout, left),
        )
        url = f"{self._api_base}/pay/{api}"
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "wechat request api=%s out_trade_no=%s body=%s",
                api,
                out_trade_no,
                _for_log(body),
            )
        try:
            response = self._pool.request(
                "POST",
                url,
                body=body,
                headers=_HEADERS,
                timeout=timeout,
                retries=False,
                redirect=False,
                preload_content=False,
            )
            try:
                # NOTE(gateway): one byte over the codec's limit is enough
                # for it to refuse the body; the rest is not read, so that
                # connection is closed rather than reused.
                raw = response.read(xml_codec.DEFAULT_MAX_BYTES + 1)
                if len(raw) > xml_codec.DEFAULT_MAX_BYTES:
                    response.close()
            finally:
                response.release_conn()
        except SSLError as error:
            # SECURITY(gateway): a TLS failure (a certificate that does not
            # verify) is not retried: repeating cannot make it trustworthy.
            raise self._unavailable(
                api, out_trade_no, f"TLS failed: {type(error).__name__}"
            ) from error
        except HTTPError as error:
            kind = type(error).__name__
            unavailable = self._unavailable(
                api, out_trade_no, f"transport error: {kind}"
            )
            unavailable.__cause__ = error
            raise _Retryable(unavailable, kind) from None

        status = response.status
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "wechat answer api=%s out_trade_no=%s status=%d body=%s",
                api,
                out_trade_no,
                status,
                _for_log(raw),
            )
        if status in _RETRY_STATUSES:
            busy = self._unavailable(
                api, out_trade_no, f"HTTP {status}", http_status=status
            )
            raise _Retryable(busy, f"HTTP_{status}")
        if status != 200:
            raise self._unexpected(
                api, out_trade_no, f"HTTP {status} instead of 200", http_status=status
            )
        return self._read_answer(api, out_trade_no, raw)

    def _read_answer(self, api: str, out_trade_no: str, raw: bytes) -> dict[str, str]:
        try:
            answer = xml_codec.parse(raw)
        except xml_codec.XmlRejected as error:
            # NOTE(gateway): a 200 whose body is not a WeChat message is not
            # retried; it comes from something that is not WeChat (a wrong
            # api_base, a proxy page) and would say the same thing again.
            raise self._unexpected(
                api, out_trade_no, f"the answer is not a WeChat message: {error}"
            ) from None

        return_code = answer.get("return_code", "")
        if return_code == "FAIL":
            # NOTE(gateway): return_code=FAIL is unsigned and carries only
            # return_msg (signature error, bad parameters, ...). Whether it
            # is ever transient is UNCONFIRMED; the strict reading is that
            # WeChat refused the request itself, so it is not retried.
            message = _clip(answer.get("return_msg", ""))
            raise WeChatRejected(
                f"WeChat refused the {api} request (return_code=FAIL):"
                f" {message or 'no return_msg'}",
                api=api,
                out_trade_no=out_trade_no,
                http_status=200,
            )
        if return_code != "SUCCESS":
            raise self._unexpected(
                api, out_trade_no, "the answer has no valid return_code"
            )

        self._check_signature(api, out_trade_no, answer)
        self._check_identity(api, out_trade_no, answer)

        result_code = answer.get("result_code", "")
        if result_code == "SUCCESS":
            return answer
        if result_code != "FAIL":
            raise self._unexpected(
                api, out_trade_no, "the answer has no valid result_code"
            )
        err_code = answer.get("err_code", "")
        description = _clip(answer.get("err_code_des", ""))
        message = f"WeChat said {err_code or 'FAIL'} to {api}: {description}"
        if err_code in _RETRY_CODES:
            busy = WeChatUnavailable(
                message,
                api=api,
                out_trade_no=out_trade_no,
                err_code=err_code,
                http_status=200,
            )
            raise _Retryable(busy, err_code)
        rejection = _TYPED_REJECTIONS.get(err_code, WeChatRejected)
        raise rejection(
            message,
            api=api,
            out_trade_no=out_trade_no,
            err_code=err_code,
            http_status=200,
        )

    def _check_signature(
        self, api: str, out_trade_no: str, answer: Mapping[str, str]
    ) -> None:
        merchant = self._merchant
        # SECURITY(gateway): WeChat signs its answer with the digest we
        # asked for. An answer declaring another sign_type is refused, or a
        # forger could downgrade an HMAC-SHA256 merchant to MD5.
        declared = answer.get(SIGN_TYPE_FIELD)
        if declared is not None and declared != merchant.sign_type.value:
            reason = f"the answer declares sign_type {_clip(declared)!r}"
        else:
            check = check_signature(answer, merchant.api_key, merchant.sign_type)
            if check.valid:
                return
            reason = check.reason
        log.warning(
            "SECURITY wechat answer signature refused api=%s out_trade_no=%s reason=%s",
            api,
            out_trade_no,
            reason,
        )
        raise BadResponseSignature(
            f"the {api} answer's signature does not hold: {reason}",
            api=api,
            out_trade_no=out_trade_no,
            http_status=200,
        )

    def _check_identity(
        self, api: str, out_trade_no: str, answer: Mapping[str, str]
    ) -> None:
        merchant = self._merchant
        expected = {"appid": merchant.appid, "mch_id": merchant.mch_id}
        # The order number is echoed by orderquery; when present it must be
        # the one we asked about.
        if "out_trade_no" in answer:
            expected["out_trade_no"] = out_trade_no
        for name, ours in expected.items():
            if answer.get(name) != ours:
                log.warning(
                    "SECURITY wechat answer for someone else api=%s"
                    " out_trade_no=%s field=%s",
                    api,
                    out_trade_no,
                    name,
                )
                raise self._unexpected(
                    api, out_trade_no, f"the answer's {name} is not ours"
                )

    # --- errors ------------------------------------------------------------

    @staticmethod
    def _unavailable(
        api: str, out_trade_no: str, reason: str, *, http_status: int | None = None
    ) -> WeChatUnavailable:
        return WeChatUnavailable(
            f"WeChat {api} gave no usable answer: {reason}",
            api=api,
            out_trade_no=out_trade_no,
            http_status=http_status,
        )

    @staticmethod
    def _unexpected(
        api: str, out_trade_no: str, reason: str, *, http_status: int = 200
    ) -> UnexpectedResponse:
        return UnexpectedResponse(
            f"unexpected {api} answer: {reason}",
            api=api,
            out_trade_no=out_trade_no,
            http_status=http_status,
        )


class _GatewayFailure(Exception):
    """Carries the final error out of the retry loop with its accounting."""

    def __init__(self, error: GatewayError, attempts: int, outcome: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts
        self.outcome = outcome


def _outcome(error: GatewayError) -> str:
    if error.err_code:
        return error.err_code
    if isinstance(error, BadResponseSignature):
        return "BAD_SIGNATURE"
    if isinstance(error, UnexpectedResponse):
        return "UNEXPECTED"
    if isinstance(error, WeChatRejected):
        return "RETURN_FAIL"
    return "UNAVAILABLE"


def _clip(text: str) -> str:
    """Shorten remote text before it goes into a message or a log line."""
    text = text.replace("\n", " ").replace("\r", " ")
    if len(text) <= _MAX_MESSAGE_TEXT:
        return text
    return text[:_MAX_MESSAGE_TEXT] + "..."


def _for_log(body: bytes) -> str:
    # SECURITY(gateway): bodies carry sign and nonce_str but never the API
    # key (it is only ever appended inside the digest), so they may go to
    # DEBUG as they are; they are cut to keep one line readable.
    text = body[:_MAX_LOGGED_BODY].decode("utf-8", errors="replace")
    return text.replace("\n", " ").replace("\r", " ")
