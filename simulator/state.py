"""WeChat's side of the protocol as pure state: the rules and the orders.

Nothing here does I/O. The HTTP layers hand in parsed fields and get back
snapshots of orders and refunds, or one of two refusals: ``ProtocolFail``
(WeChat answers ``return_code=FAIL``, unsigned) and ``BusinessFail``
(``return_code=SUCCESS``, ``result_code=FAIL`` with an ``err_code``,
signed). The payer's side refuses with ``PayerError``, carrying the text
WeChat would show on the phone.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import string
import threading
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

from domain.money import Fen
from domain.money import InvalidAmount
from domain.signature import ApiKey
from domain.signature import SignType
from domain.signature import UnknownSignType
from domain.signature import check_signature

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
WECHAT_TIME = "%Y%m%d%H%M%S"

PREPAY_LIFETIME = timedelta(hours=2)
CLOSE_AFTER = timedelta(minutes=5)
# NOTE(simulator): current docs recommend more than 1 minute between now and
# time_expire, older ones require 5 minutes for everything but micropay;
# WeChat's own refusal reads "刷卡至少1分钟，其他5分钟". The strict reading wins.
MIN_TIME_TO_EXPIRE = timedelta(minutes=5)
MAX_REFUNDS = 50
REFUND_WINDOW = timedelta(days=365)
BILL_READY_AFTER = timedelta(days=1, hours=10)
BILL_KEPT_FOR = timedelta(days=92)

TRADE_STATE_DESC = {
    "NOTPAY": "订单未支付",
    "SUCCESS": "支付成功",
    "REFUND": "转入退款",
    "CLOSED": "已关闭",
    "PAYERROR": "支付失败(其他原因，如银行返回失败)",
}

# Messages the payer sees in WeChat.
BAD_BIZPAYURL = "原生支付URL参数错误"
CALLBACK_UNREACHABLE = "获取商户订单信息超时或者商户返回的httpcode非200"
CALLBACK_MALFORMED = "商户后台返回的数据字段结构不合法"
CALLBACK_SIGNATURE = "签名错误"
# NOTE(simulator): WeChat's wording for these is not documented; they are
# the simulator's own, kept short so a test can match them.
QR_EXPIRED = "二维码已过期"
QR_UNKNOWN = "无效的二维码"
ORDER_PAID = "该订单已支付"
ORDER_CLOSED = "该订单已关闭"
READY_TO_PAY = "确认支付"
PAID = "支付成功"
OTHER_PAYER = "该订单不属于当前付款用户"

# total_fee and refund amounts are an Int on WeChat's side (reference
# §4.1): a signed 32-bit integer.
MAX_FEN = 2**31 - 1
# The String(n) limits of unifiedorder's fields (reference §4.1).
# NOTE(simulator): the reference gives body as String(127) (WxJava's
# javadoc says 128) and does not say whether n counts characters or
# bytes. The strict reading is taken: 127, counted in UTF-8 bytes, so a
# Chinese character counts 3. A merchant that fits these fits either.
FIELD_BYTES = (
    ("body", 127),
    ("attach", 127),
    ("product_id", 32),
    ("device_info", 32),
    ("spbill_create_ip", 64),
)

_OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-|*]{6,32}\Z")
_OUT_REFUND_NO = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}\Z")
_DIGITS14 = re.compile(r"[0-9]{14}\Z")
_TIME_STAMP = re.compile(r"[0-9]{10}\Z")

# Fields that do not define an order: a re-entry may change them.
_NOT_DEFINING = frozenset({"nonce_str", "sign", "sign_type", "time_start"})
_BIZPAYURL_FIELDS = frozenset(
    {"appid", "mch_id", "nonce_str", "product_id", "time_stamp", "sign"}
)
_CALLBACK_REPLY_FIELDS = ("return_code", "appid", "mch_id", "nonce_str")


class ProtocolFail(Exception):
    """A request WeChat refuses at the protocol level (unsigned answer)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BusinessFail(Exception):
    """A request WeChat refuses with ``result_code=FAIL`` and an err_code."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class PayerError(Exception):
    """What the payer's phone shows when a scan or a payment cannot go on."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or message


class Clock:
    """Real time in Beijing plus an offset that tests can advance.

    Args:
        source: where real time comes from; defaults to the system clock.
    """

    def __init__(self, source: Callable[[], datetime] | None = None) -> None:
        self._source = source or (lambda: datetime.now(BEIJING))
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            offset = self._offset
        return self._source().astimezone(BEIJING) + offset

    @property
    def offset(self) -> timedelta:
        with self._lock:
            return self._offset

    def advance(self, seconds: float) -> datetime:
        """Move simulated time forward; it never goes back."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += timedelta(seconds=seconds)
        return self.now()

    def reset(self) -> None:
        with self._lock:
            self._offset = timedelta(0)


@dataclass(frozen=True)
class Merchant:
    """One merchant as WeChat knows it: ids, API key, callback URL."""

    appid: str
    mch_id: str
    api_key: ApiKey = field(repr=False)
    sign_type: SignType = SignType.MD5
    callback_url: str = ""
    refund_notify_url: str = ""


@dataclass
class Refund:
    """One refund of a paid order; the simulator settles it at once."""

    out_refund_no: str
    refund_id: str
    refund_fee: int
    total_fee: int
    notify_url: str
    requested_at: datetime
    refund_desc: str = ""
    refund_status: str = "SUCCESS"
    # NOTE(simulator): real refunds stay PROCESSING for minutes or days;
    # here they succeed when they are accepted.
    success_time: datetime | None = None


@dataclass
class Order:
    """A NATIVE order and everything that happened to it."""

    merchant: Merchant
    out_trade_no: str
    defining: dict[str, str]
    total_fee: int
    body: str
    product_id: str
    notify_url: str
    attach: str
    device_info: str
    sign_type: SignType
    created_at: datetime
    time_expire: datetime | None
    prepay_id: str
    code_url: str
    prepay_expires_at: datetime
    trade_type: str = "NATIVE"
    fee_type: str = "CNY"
    trade_state: str = "NOTPAY"
    openid: str = ""
    # The openid given to unifiedorder, if any: only this payer may pay.
    placed_for: str = ""
    is_subscribe: str = "N"
    transaction_id: str = ""
    paid_at: datetime | None = None
    bank_type: str = ""
    cash_fee: int = 0
    coupon_fee: int = 0
    coupon_id: str = ""
    closed_at: datetime | None = None
    refunds: list[Refund] = field(default_factory=list)

    @property
    def refunded(self) -> int:
        return sum(refund.refund_fee for refund in self.refunds)

    def snapshot(self) -> Order:
        return dataclasses.replace(
            self,
            defining=dict(self.defining),
            refunds=[dataclasses.replace(refund) for refund in self.refunds],
        )


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour of an API (or of notify delivery)."""

    api: str
    kind: str
    remaining: int
    delay: float = 0.0


FAULT_KINDS = ("SYSTEMERROR", "slow", "http500", "drop_notify")
# drop_notify is the one fault of notify delivery; the other kinds are
# faults of these merchant APIs.
DROP_NOTIFY = "drop_notify"
NOTIFY_FAULT_API = "notify"
FAULT_APIS = (
    "unifiedorder",
    "orderquery",
    "closeorder",
    "refund",
    "refundquery",
    "downloadbill",
    "shorturl",
    "getsignkey",
)


class FaultBook:
    """Faults waiting to happen, consumed one call at a time."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, api: str, kind: str, count: int = 1, delay: float = 0.0) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if kind == DROP_NOTIFY:
            if api not in ("", NOTIFY_FAULT_API):
                raise ValueError(
                    f"{DROP_NOTIFY} drops notify deliveries: its api is"
                    f" {NOTIFY_FAULT_API} (or leave api out)"
                )
            api = NOTIFY_FAULT_API
        elif api not in FAULT_APIS:
            raise ValueError(
                f"api must be one of {', '.join(FAULT_APIS)}"
                f" ({NOTIFY_FAULT_API} takes only {DROP_NOTIFY})"
            )
        if count < 1 or delay < 0:
            raise ValueError("count must be at least 1 and delay not negative")
        fault = Fault(api, kind, count, delay)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, api: str) -> Fault | None:
        """Consume one occurrence of the oldest fault queued for ``api``."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.api != api:
                    continue
                if fault.remaining > 1:
                    self._faults[index] = dataclasses.replace(
                        fault, remaining=fault.remaining - 1
                    )
                else:
                    del self._faults[index]
                return fault
        return None

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


@dataclass(frozen=True)
class CallbackVerdict:
    """How WeChat judged a merchant's reply to a mode-1 callback."""

    ok: bool
    message: str
    verdict: str
    order: Order | None = None


class Ledger:
    """Every merchant, order and refund the simulated WeChat knows.

    All methods are safe to call from several threads; what they return
    is a snapshot that later changes do not touch.

    Args:
        merchants: the merchants WeChat serves, at least one.
        clock: the time every rule is evaluated against.
    """

    def __init__(self, merchants: list[Merchant], clock: Clock) -> None:
        if not merchants:
            raise ValueError("the simulator needs at least one merchant")
        self.clock = clock
        self.merchants = {merchant.mch_id: merchant for merchant in merchants}
        self._lock = threading.RLock()
        self._orders: dict[tuple[str, str], Order] = {}
        self._by_transaction: dict[str, Order] = {}
        self._by_prepay: dict[str, Order] = {}
        self._by_code_url: dict[str, Order] = {}
        self._short_urls: dict[str, str] = {}

    def reset(self) -> None:
        with self._lock:
            self._orders.clear()
            self._by_transaction.clear()
            self._by_prepay.clear()
            self._by_code_url.clear()
            self._short_urls.clear()

    # -- the checks every merchant API request goes through ---------------

    def authenticate(
        self, fields: Mapping[str, str], *, needs_appid: bool = True
    ) -> tuple[Merchant, SignType]:
        """Identify the merchant and check the request's signature.

        Raises:
            ProtocolFail: missing ids, unknown merchant, appid not bound to
                the mch_id, unknown sign_type, or a bad signature.
        """
        required = ("appid", "mch_id", "nonce_str", "sign")
        for name in required if needs_appid else required[1:]:
            if not fields.get(name):
                raise ProtocolFail("LACK_PARAMS", f"缺少参数{name}")
        merchant = self.merchants.get(fields["mch_id"])
        if merchant is None:
            raise ProtocolFail("MCHID_NOT_EXIST", "商户号mch_id不存在")
        if needs_appid and fields["appid"] != merchant.appid:
            raise ProtocolFail("APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        try:
            sign_type = SignType.from_wire(fields.get("sign_type") or "MD5")
        except UnknownSignType:
            raise ProtocolFail("PARAM_ERROR", "sign_type参数格式错误") from None
        # SECURITY(simulator): the digest is the one the request names (MD5
        # when absent), never guessed from the sign's length.
        result = check_signature(fields, merchant.api_key, sign_type)
        if not result.valid:
            raise ProtocolFail("SIGNERROR", "签名错误")
        if len(fields["nonce_str"]) > 32:
            raise ProtocolFail("PARAM_ERROR", "nonce_str参数长度有误")
        return merchant, sign_type

    # -- unifiedorder, orderquery, closeorder ------------------------------

    def unified_order(
        self, merchant: Merchant, sign_type: SignType, fields: Mapping[str, str]
    ) -> Order:
        """Place a NATIVE order, or re-enter one with identical parameters.

        Raises:
            BusinessFail: LACK_PARAMS, PARAM_ERROR, ORDERPAID, ORDERCLOSED,
                INVALID_REQUEST (re-entry with changed parameters).
        """
        now = self.clock.now()
        _require(
            fields,
            "body",
            "out_trade_no",
            "total_fee",
            "spbill_create_ip",
            "notify_url",
            "trade_type",
        )
        if fields["trade_type"] != "NATIVE":
            # TODO(simulator): JSAPI, APP and MWEB orders; add them when the
            # service sells through anything but a QR code.
            raise BusinessFail("PARAM_ERROR", "trade_type参数错误，模拟器只支持NATIVE")
        _require(fields, "product_id")
        out_trade_no = _out_trade_no(fields["out_trade_no"])
        total_fee = _positive_fen(fields["total_fee"], "total_fee")
        _check_notify_url(fields["notify_url"])
        for name, limit in FIELD_BYTES:
            if len(fields.get(name, "").encode("utf-8")) > limit:
                raise BusinessFail("PARAM_ERROR", f"{name}参数长度有误")
        if len(fields.get("openid", "")) > 128:
            raise BusinessFail("PARAM_ERROR", "openid参数长度有误")
        if (fields.get("fee_type") or "CNY") != "CNY":
            raise BusinessFail("PARAM_ERROR", "fee_type参数错误，只支持CNY")
        time_start = _wechat_time(fields, "time_start")
        time_expire = _wechat_time(fields, "time_expire")
        if time_expire is not None:
            if time_start is not None and time_expire <= time_start:
                raise BusinessFail("PARAM_ERROR", "time_expire必须晚于time_start")
            if time_expire - now < MIN_TIME_TO_EXPIRE:
                raise BusinessFail(
                    "PARAM_ERROR", "time_expire时间过短，刷卡至少1分钟，其他5分钟"
                )
        defining = {
            name: value
            for name, value in fields.items()
            if value and name not in _NOT_DEFINING
        }

        with self._lock:
            order = self._orders.get((merchant.mch_id, out_trade_no))
            if order is not None:
                self._settle(order, now)
                _refuse_finished(order)
                if order.defining != defining:
                    raise BusinessFail("INVALID_REQUEST", "201 商户订单号重复")
                if now >= order.prepay_expires_at:
                    self._renew_prepay(order, now)
                return order.snapshot()

            order = Order(
                merchant=merchant,
                out_trade_no=out_trade_no,
                defining=defining,
                total_fee=total_fee,
                body=fields["body"],
                product_id=fields["product_id"],
                notify_url=fields["notify_url"],
                attach=fields.get("attach", ""),
                device_info=fields.get("device_info", ""),
                placed_for=fields.get("openid", ""),
                sign_type=sign_type,
                created_at=now,
                time_expire=time_expire,
                prepay_id="",
                code_url="",
                prepay_expires_at=now,
            )
            self._renew_prepay(order, now)
            self._orders[(merchant.mch_id, out_trade_no)] = order
            return order.snapshot()

    def query(self, merchant: Merchant, fields: Mapping[str, str]) -> Order:
        """Find an order by transaction_id (preferred) or out_trade_no.

        Raises:
            BusinessFail: LACK_PARAMS, ORDERNOTEXIST.
        """
        with self._lock:
            return self._find(merchant, fields).snapshot()

    def close(self, merchant: Merchant, fields: Mapping[str, str]) -> Order:
        """Close an unpaid order, no sooner than 5 minutes after ordering.

        Raises:
            BusinessFail: LACK_PARAMS, ORDERNOTEXIST, ORDERPAID, ORDERCLOSED,
                INVALID_REQUEST (too early).
        """
        _require(fields, "out_trade_no")
        now = self.clock.now()
        with self._lock:
            order = self._find(merchant, {"out_trade_no": fields["out_trade_no"]})
            _refuse_finished(order)
            if now - order.created_at < CLOSE_AFTER:
                # NOTE(simulator): WeChat documents the 5-minute rule but
                # not the err_code it answers; INVALID_REQUEST is ours.
                raise BusinessFail(
                    "INVALID_REQUEST",
                    "订单生成后不能马上调用关单接口，最短调用时间间隔为5分钟",
                )
            order.trade_state = "CLOSED"
            order.closed_at = now
            return order.snapshot()

    # -- refunds ------------------------------------------------------------

    def refund(
        self, merchant: Merchant, fields: Mapping[str, str]
    ) -> tuple[Order, Refund, bool]:
        """Refund part or all of a paid order; the same out_refund_no is
        the same refund.

        Returns:
            The order, the refund, and whether the refund is new.

        Raises:
            BusinessFail: LACK_PARAMS, PARAM_ERROR, ORDERNOTEXIST,
                TRADE_STATE_ERROR, TRADE_OVERDUE, INVALID_REQUEST, ERROR.
        """
        _require(fields, "out_refund_no", "total_fee", "refund_fee")
        if not _OUT_REFUND_NO.match(fields["out_refund_no"]):
            raise BusinessFail("PARAM_ERROR", "out_refund_no参数格式错误")
        total_fee = _positive_fen(fields["total_fee"], "total_fee")
        refund_fee = _positive_fen(fields["refund_fee"], "refund_fee")
        if (fields.get("refund_fee_type") or "CNY") != "CNY":
            raise BusinessFail("PARAM_ERROR", "refund_fee_type参数错误，只支持CNY")
        notify_url = fields.get("notify_url") or merchant.refund_notify_url
        if fields.get("notify_url"):
            _check_notify_url(fields["notify_url"])
        now = self.clock.now()

        with self._lock:
            order = self._find(merchant, fields)
            for existing in order.refunds:
                if existing.out_refund_no != fields["out_refund_no"]:
                    continue
                if (existing.refund_fee, existing.total_fee) != (
                    refund_fee,
                    total_fee,
                ):
                    raise BusinessFail(
                        "INVALID_REQUEST", "同一商户退款单号的退款金额与原请求不一致"
                    )
                return order.snapshot(), dataclasses.replace(existing), False
            if order.trade_state not in ("SUCCESS", "REFUND"):
                raise BusinessFail("TRADE_STATE_ERROR", "订单状态错误，订单未支付")
            assert order.paid_at is not None
            if now - order.paid_at > REFUND_WINDOW:
                raise BusinessFail("TRADE_OVERDUE", "订单已经超过退款期限")
            if total_fee != order.total_fee:
                raise BusinessFail(
                    "INVALID_REQUEST", "订单金额total_fee与支付金额不一致"
                )
            if len(order.refunds) >= MAX_REFUNDS:
                raise BusinessFail("ERROR", "订单已经超过可退款的最大次数")
            if order.refunded + refund_fee > order.total_fee:
                raise BusinessFail("ERROR", "累计退款金额大于支付金额")
            # TODO(simulator): WeChat also wants a minute between two
            # refunds of one order (FREQUENCY_LIMITED); add it when a test
            # of the service's refund back-off needs it.
            refund = Refund(
                out_refund_no=fields["out_refund_no"],
                refund_id=_digits("503", 29),
                refund_fee=refund_fee,
                total_fee=total_fee,
                notify_url=notify_url,
                requested_at=now,
                refund_desc=fields.get("refund_desc", ""),
                success_time=now,
            )
            order.refunds.append(refund)
            order.trade_state = "REFUND"
            return order.snapshot(), dataclasses.replace(refund), True

    def refund_query(
        self, merchant: Merchant, fields: Mapping[str, str]
    ) -> tuple[Order, list[Refund]]:
        """Find refunds by refund_id > out_refund_no > transaction_id >
        out_trade_no, as WeChat ranks them.

        Raises:
            BusinessFail: LACK_PARAMS, REFUNDNOTEXIST, PARAM_ERROR (offset).
        """
        with self._lock:
            for name in ("refund_id", "out_refund_no"):
                wanted = fields.get(name)
                if not wanted:
                    continue
                for order in self._orders.values():
                    if order.merchant.mch_id != merchant.mch_id:
                        continue
                    for refund in order.refunds:
                        if getattr(refund, name) == wanted:
                            return order.snapshot(), [dataclasses.replace(refund)]
                raise BusinessFail("REFUNDNOTEXIST", "退款订单查询失败")
            try:
                order = self._find(merchant, fields)
            except BusinessFail as error:
                if error.code == "LACK_PARAMS":
                    raise
                raise BusinessFail("REFUNDNOTEXIST", "退款订单查询失败") from None
            if not order.refunds:
                raise BusinessFail("REFUNDNOTEXIST", "退款订单查询失败")
            snapshot = order.snapshot()
        offset_text = fields.get("offset", "")
        offset = int(offset_text) if offset_text.isdigit() else 0
        if offset_text and (
            not offset_text.isdigit() or offset >= len(snapshot.refunds)
        ):
            raise BusinessFail("PARAM_ERROR", "offset参数错误")
        return snapshot, snapshot.refunds[offset : offset + 10]

    # -- bills and short URLs ----------------------------------------------

    def bill(
        self, merchant: Merchant, bill_date: str, bill_type: str
    ) -> tuple[list[Order], list[tuple[Order, Refund]]]:
        """Collect one day's payments and refunds of a merchant.

        Raises:
            ProtocolFail: with WeChat's bill ``return_msg`` texts.
        """
        if bill_type not in ("ALL", "SUCCESS", "REFUND", "RECHARGE_REFUND"):
            raise ProtocolFail("PARAM_ERROR", "invalid bill_type")
        try:
            day = datetime.strptime(bill_date, "%Y%m%d").replace(tzinfo=BEIJING)
        except ValueError:
            raise ProtocolFail("PARAM_ERROR", "data format error") from None
        if not re.fullmatch(r"[0-9]{8}", bill_date):
            raise ProtocolFail("PARAM_ERROR", "data format error")
        now = self.clock.now()
        if now < day + BILL_READY_AFTER:
            # NOTE(simulator): a day's bill is made from 09:00 the next day
            # and is safe to fetch after 10:00; before that it does not
            # exist yet.
            raise ProtocolFail("NO_BILL", "No Bill Exist")
        if now - day > BILL_KEPT_FOR:
            raise ProtocolFail("NO_BILL", "No Bill Exist")

        def on_day(moment: datetime | None) -> bool:
            return moment is not None and moment.date() == day.date()

        with self._lock:
            orders = [
                order for order in self._orders.values() if order.merchant == merchant
            ]
            payments = [
                order.snapshot()
                for order in orders
                if bill_type in ("ALL", "SUCCESS") and on_day(order.paid_at)
            ]
            refunds = [
                (order.snapshot(), dataclasses.replace(refund))
                for order in orders
                for refund in order.refunds
                if bill_type in ("ALL", "REFUND") and on_day(refund.success_time)
            ]
        if not payments and not refunds:
            raise ProtocolFail("NO_BILL", "No Bill Exist")
        payments.sort(key=lambda order: order.paid_at or now)
        refunds.sort(key=lambda pair: pair[1].success_time or now)
        return payments, refunds

    def shorten(self, long_url: str) -> str:
        """Give a mode-1 link (or any weixin:// link) a short alias."""
        if not long_url.startswith("weixin://"):
            raise BusinessFail("PARAM_ERROR", "long_url参数错误")
        if len(long_url) > 512:
            raise BusinessFail("PARAM_ERROR", "long_url参数长度有误")
        with self._lock:
            for short, target in self._short_urls.items():
                if target == long_url:
                    return short
            short = "weixin://wxpay/s/" + _token(7)
            self._short_urls[short] = long_url
            return short

    # -- the payer's side ---------------------------------------------------

    def check_bizpayurl(self, qr: str) -> tuple[Merchant, str]:
        """Check a mode-1 link as WeChat does before calling the merchant.

        Returns:
            The merchant and the product_id.

        Raises:
            PayerError: ``原生支付URL参数错误`` with the reason as detail.
        """
        with self._lock:
            qr = self._short_urls.get(qr, qr)
        parts = urlsplit(qr)
        if (parts.scheme, parts.netloc, parts.path) != (
            "weixin",
            "wxpay",
            "/bizpayurl",
        ):
            raise PayerError(BAD_BIZPAYURL, "not a weixin://wxpay/bizpayurl link")
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        fields = dict(pairs)
        if len(fields) != len(pairs):
            raise PayerError(BAD_BIZPAYURL, "a parameter appears twice")
        names = set(fields)
        if names != _BIZPAYURL_FIELDS:
            missing = sorted(_BIZPAYURL_FIELDS - names)
            extra = sorted(names - _BIZPAYURL_FIELDS)
            raise PayerError(BAD_BIZPAYURL, f"missing {missing}, unexpected {extra}")
        if any(not value for value in fields.values()):
            raise PayerError(BAD_BIZPAYURL, "a parameter is empty")
        merchant = self.merchants.get(fields["mch_id"])
        if merchant is None or merchant.appid != fields["appid"]:
            raise PayerError(BAD_BIZPAYURL, "unknown appid/mch_id pair")
        if not _TIME_STAMP.match(fields["time_stamp"]):
            raise PayerError(BAD_BIZPAYURL, "time_stamp is not 10-digit Unix seconds")
        if len(fields["product_id"]) > 32 or len(fields["nonce_str"]) > 32:
            raise PayerError(BAD_BIZPAYURL, "product_id or nonce_str too long")
        # NOTE(simulator): the link carries no sign_type. Whether WeChat
        # accepts HMAC-SHA256 here is unconfirmed; the strict reading is
        # MD5 only, which is what every SDK signs with.
        if not check_signature(fields, merchant.api_key, SignType.MD5).valid:
            raise PayerError(BAD_BIZPAYURL, "the MD5 sign does not match")
        return merchant, fields["product_id"]

    def judge_callback(
        self,
        merchant: Merchant,
        product_id: str,
        openid: str,
        reply: Mapping[str, str] | None,
        problem: str = "",
    ) -> CallbackVerdict:
        """Judge a merchant's reply to a mode-1 callback as WeChat does.

        Args:
            reply: the parsed XML reply, or None when the body was not
                acceptable XML (``problem`` then says why).
        """
        if reply is None:
            return CallbackVerdict(False, CALLBACK_MALFORMED, problem or "not XML")
        if not reply.get("return_code"):
            return CallbackVerdict(False, CALLBACK_MALFORMED, "no return_code")
        if not reply.get("sign"):
            return CallbackVerdict(False, CALLBACK_SIGNATURE, "the reply is unsigned")
        check = check_signature(reply, merchant.api_key, merchant.sign_type)
        if not check.valid:
            return CallbackVerdict(False, CALLBACK_SIGNATURE, check.reason)
        if reply["return_code"] != "SUCCESS":
            why = reply.get("return_msg") or ""
            return CallbackVerdict(
                False, why or CALLBACK_MALFORMED, f"return_code FAIL: {why}"
            )
        for name in (*_CALLBACK_REPLY_FIELDS, "result_code"):
            if not reply.get(name):
                return CallbackVerdict(False, CALLBACK_MALFORMED, f"no {name}")
        if (reply["appid"], reply["mch_id"]) != (merchant.appid, merchant.mch_id):
            return CallbackVerdict(False, CALLBACK_MALFORMED, "appid/mch_id differ")
        if reply["result_code"] != "SUCCESS":
            if not reply.get("err_code_des"):
                return CallbackVerdict(
                    False, CALLBACK_MALFORMED, "result_code FAIL without err_code_des"
                )
            return CallbackVerdict(
                False, reply["err_code_des"], "the merchant refused the order"
            )
        if not reply.get("prepay_id"):
            return CallbackVerdict(False, CALLBACK_MALFORMED, "no prepay_id")

        now = self.clock.now()
        with self._lock:
            order = self._by_prepay.get(reply["prepay_id"])
            if order is None or order.merchant != merchant:
                return CallbackVerdict(False, CALLBACK_MALFORMED, "unknown prepay_id")
            if order.trade_type != "NATIVE" or order.product_id != product_id:
                return CallbackVerdict(
                    False,
                    CALLBACK_MALFORMED,
                    f"prepay_id is for product {order.product_id!r},"
                    f" the QR names {product_id!r}",
                )
            self._settle(order, now)
            try:
                _refuse_unpayable(order, now, reply["prepay_id"])
                _refuse_other_payer(order, openid)
            except PayerError as error:
                return CallbackVerdict(False, error.message, error.detail)
            order.openid = openid
            return CallbackVerdict(True, READY_TO_PAY, "accepted", order.snapshot())

    def resolve_code_url(self, code_url: str) -> Order:
        """Find the order behind a mode-2 ``code_url`` the payer scanned.

        Raises:
            PayerError: unknown, expired, paid or closed.
        """
        now = self.clock.now()
        with self._lock:
            order = self._by_code_url.get(code_url)
            if order is None:
                raise PayerError(QR_UNKNOWN, "no order has this code_url")
            self._settle(order, now)
            _refuse_unpayable(order, now, code_url)
            return order.snapshot()

    def find_order(self, out_trade_no: str, mch_id: str = "") -> Order:
        """Look an order up for the payer or the control API.

        Raises:
            KeyError: no such order, or several merchants have one.
        """
        with self._lock:
            matches = [
                order
                for (owner, number), order in self._orders.items()
                if number == out_trade_no and (not mch_id or owner == mch_id)
            ]
            if len(matches) != 1:
                raise KeyError(out_trade_no)
            self._settle(matches[0], self.clock.now())
            return matches[0].snapshot()

    def orders(self) -> list[Order]:
        now = self.clock.now()
        with self._lock:
            for order in self._orders.values():
                self._settle(order, now)
            return [order.snapshot() for order in self._orders.values()]

    def pay(
        self,
        out_trade_no: str,
        *,
        mch_id: str = "",
        coupon_fee: int = 0,
        openid: str = "",
        bank_type: str = "OTHERS",
        fail: bool = False,
    ) -> Order:
        """The payer pays (or the bank fails) an order they scanned.

        ``openid`` is the payer; without one, the order's own payer (the
        mode-1 scanner, or the openid it was placed for) pays, else a
        default one.

        Raises:
            PayerError: unknown order, not payable, or a bad coupon.
            KeyError: no such order.
        """
        now = self.clock.now()
        with self._lock:
            found = self.find_order(out_trade_no, mch_id)
            order = self._orders[(found.merchant.mch_id, found.out_trade_no)]
            _refuse_unpayable(order, now, order.code_url)
            _refuse_other_payer(order, openid)
            if coupon_fee and not 0 < coupon_fee < order.total_fee:
                raise PayerError(
                    "代金券金额无效", "coupon_fee must be above 0 and below total_fee"
                )
            if fail:
                order.trade_state = "PAYERROR"
                return order.snapshot()
            order.trade_state = "SUCCESS"
            order.openid = openid or order.openid or order.placed_for or DEFAULT_OPENID
            order.transaction_id = (
                "42000" + _digits("", 5) + now.strftime("%Y%m%d") + _digits("", 10)
            )
            order.paid_at = now
            order.bank_type = bank_type
            order.coupon_fee = coupon_fee
            order.cash_fee = order.total_fee - coupon_fee
            order.coupon_id = _digits("2", 19) if coupon_fee else ""
            self._by_transaction[order.transaction_id] = order
            return order.snapshot()

    # -- internals -----------------------------------------------------------

    def _find(self, merchant: Merchant, fields: Mapping[str, str]) -> Order:
        transaction_id = fields.get("transaction_id")
        out_trade_no = fields.get("out_trade_no")
        if transaction_id:
            order = self._by_transaction.get(transaction_id)
        elif out_trade_no:
            order = self._orders.get((merchant.mch_id, out_trade_no))
        else:
            raise BusinessFail("LACK_PARAMS", "缺少参数out_trade_no或transaction_id")
        if order is None or order.merchant != merchant:
            raise BusinessFail("ORDERNOTEXIST", "此交易订单号不存在")
        self._settle(order, self.clock.now())
        return order

    def _settle(self, order: Order, now: datetime) -> None:
        expire = order.time_expire
        if order.trade_state == "NOTPAY" and expire is not None and now >= expire:
            order.trade_state = "CLOSED"
            order.closed_at = expire

    def _renew_prepay(self, order: Order, now: datetime) -> None:
        order.prepay_id = "wx" + now.strftime(WECHAT_TIME) + secrets.token_hex(10)
        order.code_url = "weixin://wxpay/bizpayurl?pr=" + _token(9)
        order.prepay_expires_at = now + PREPAY_LIFETIME
        self._by_prepay[order.prepay_id] = order
        self._by_code_url[order.code_url] = order


DEFAULT_OPENID = "oSIMULATORpayer0000000000000"


def format_wechat_time(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime(WECHAT_TIME)


def bill_date_of(moment: datetime) -> date:
    return moment.astimezone(BEIJING).date()


def _require(fields: Mapping[str, str], *names: str) -> None:
    for name in names:
        if not fields.get(name):
            raise BusinessFail("LACK_PARAMS", f"缺少参数{name}")


def _out_trade_no(text: str) -> str:
    if not _OUT_TRADE_NO.match(text):
        raise BusinessFail(
            "PARAM_ERROR", "out_trade_no参数格式错误：6-32位数字、字母或_-|*"
        )
    return text


def _positive_fen(text: str, name: str) -> int:
    try:
        amount = Fen.parse(text)
    except InvalidAmount:
        raise BusinessFail("PARAM_ERROR", f"{name}参数格式错误") from None
    if amount.value <= 0:
        raise BusinessFail("PARAM_ERROR", f"{name}必须大于0")
    if amount.value > MAX_FEN:
        raise BusinessFail("PARAM_ERROR", f"{name}超出范围")
    return amount.value


def _check_notify_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BusinessFail("PARAM_ERROR", "notify_url参数格式错误")
    if parts.query or parts.fragment or "?" in url:
        raise BusinessFail("PARAM_ERROR", "notify_url不能携带参数")
    if len(url) > 256:
        raise BusinessFail("PARAM_ERROR", "notify_url参数长度有误")
    # TODO(simulator): WeChat wants https for public hosts; enforce it when
    # the simulator serves anything but loopback merchants.


def _wechat_time(fields: Mapping[str, str], name: str) -> datetime | None:
    text = fields.get(name, "")
    if not text:
        return None
    try:
        if not _DIGITS14.match(text):
            raise ValueError(text)
        return datetime.strptime(text, WECHAT_TIME).replace(tzinfo=BEIJING)
    except ValueError:
        raise BusinessFail(
            "PARAM_ERROR", f"{name}参数格式错误，应为yyyyMMddHHmmss"
        ) from None


def _refuse_finished(order: Order) -> None:
    if order.trade_state in ("SUCCESS", "REFUND"):
        raise BusinessFail("ORDERPAID", ORDER_PAID)
    if order.trade_state in ("CLOSED", "PAYERROR"):
        raise BusinessFail("ORDERCLOSED", ORDER_CLOSED)


def _refuse_unpayable(order: Order, now: datetime, via: str) -> None:
    if order.trade_state in ("SUCCESS", "REFUND"):
        raise PayerError(ORDER_PAID, f"order is {order.trade_state}")
    if order.trade_state != "NOTPAY":
        raise PayerError(ORDER_CLOSED, f"order is {order.trade_state}")
    if now >= order.prepay_expires_at or via not in (order.code_url, order.prepay_id):
        raise PayerError(QR_EXPIRED, "code_url and prepay_id live 2 hours")


def _refuse_other_payer(order: Order, openid: str) -> None:
    # NOTE(simulator): an order placed with an openid can be paid by that
    # WeChat user only. WeChat's own wording for this refusal is not
    # documented; OTHER_PAYER is the simulator's.
    if order.placed_for and openid and openid != order.placed_for:
        raise PayerError(
            OTHER_PAYER,
            f"the order was placed for openid {order.placed_for!r};"
            f" {openid!r} is paying",
        )


def _digits(prefix: str, length: int) -> str:
    return prefix + "".join(
        secrets.choice(string.digits) for _ in range(length - len(prefix))
    )


def _token(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))
