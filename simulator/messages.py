"""WeChat's wire formats, written from the simulator's state (no I/O).

Answers, notifies and the mode-1 callback are flat field mappings that
``adapters.xml_codec.write`` turns into XML; the bill is WeChat's text.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers import modes

from domain.money import Fen
from domain.signature import SignType
from domain.signature import signed
from simulator.state import BEIJING
from simulator.state import TRADE_STATE_DESC
from simulator.state import Merchant
from simulator.state import Order
from simulator.state import Refund
from simulator.state import format_wechat_time

BILL_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,"
    "用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,"
    "微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
    "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
BILL_SUMMARY_HEADER = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,"
    "订单总金额,申请退款总金额"
)
FEE_RATE = "0.60%"
# NOTE(simulator): the bill's line ending is not documented; CRLF is the
# stricter choice for a merchant's parser.
BILL_NEWLINE = "\r\n"


def nonce() -> str:
    return secrets.token_hex(16)


def success(
    merchant: Merchant, sign_type: SignType, extra: dict[str, str]
) -> dict[str, str]:
    """A signed answer with both codes SUCCESS and ``extra`` fields."""
    return _signed_answer(merchant, sign_type, "SUCCESS", extra)


def business_fail(
    merchant: Merchant, sign_type: SignType, code: str, description: str
) -> dict[str, str]:
    """A signed ``result_code=FAIL`` answer carrying WeChat's err_code."""
    extra = {"err_code": code, "err_code_des": description}
    return _signed_answer(merchant, sign_type, "FAIL", extra)


def _signed_answer(
    merchant: Merchant,
    sign_type: SignType,
    result_code: str,
    extra: dict[str, str],
) -> dict[str, str]:
    fields = {
        "return_code": "SUCCESS",
        "return_msg": "OK",
        "appid": merchant.appid,
        "mch_id": merchant.mch_id,
        "nonce_str": nonce(),
        "result_code": result_code,
        **extra,
    }
    return signed(fields, merchant.api_key, sign_type)


def protocol_fail(code: str, message: str) -> dict[str, str]:
    """An unsigned ``return_code=FAIL`` answer.

    NOTE(simulator): WeChat itself sends only return_code and return_msg
    here; the simulator adds ``err_code`` with the name from WeChat's error
    table (SIGNERROR, LACK_PARAMS, ...) so logs and tests can match a code
    instead of a Chinese sentence. A merchant must read only return_msg.
    """
    return {"return_code": "FAIL", "return_msg": message, "err_code": code}


def order_created(order: Order) -> dict[str, str]:
    return {
        "trade_type": order.trade_type,
        "prepay_id": order.prepay_id,
        "code_url": order.code_url,
        "device_info": order.device_info,
    }


def paid_fields(order: Order) -> dict[str, str]:
    """The payment fields that orderquery and the notify share."""
    fields = {
        "device_info": order.device_info,
        "openid": order.openid,
        "is_subscribe": order.is_subscribe,
        "trade_type": order.trade_type,
        "bank_type": order.bank_type,
        "total_fee": str(order.total_fee),
        "fee_type": order.fee_type,
        "cash_fee": str(order.cash_fee),
        "transaction_id": order.transaction_id,
        "out_trade_no": order.out_trade_no,
        "attach": order.attach,
        "time_end": format_wechat_time(order.paid_at) if order.paid_at else "",
    }
    if order.coupon_fee:
        fields.update(
            coupon_fee=str(order.coupon_fee),
            coupon_count="1",
            coupon_fee_0=str(order.coupon_fee),
            coupon_id_0=order.coupon_id,
        )
    return fields


def order_queried(order: Order) -> dict[str, str]:
    state = order.trade_state
    if state in ("SUCCESS", "REFUND"):
        fields = paid_fields(order)
    else:
        fields = {
            "device_info": order.device_info,
            "out_trade_no": order.out_trade_no,
            "attach": order.attach,
            "total_fee": str(order.total_fee),
            "fee_type": order.fee_type,
            "trade_type": order.trade_type,
            "openid": order.openid,
        }
    fields["trade_state"] = state
    fields["trade_state_desc"] = TRADE_STATE_DESC[state]
    return fields


def payment_notify(order: Order) -> dict[str, str]:
    """The payment result notify, signed as the order was placed.

    WeChat signs it with the digest the order was placed with; for
    HMAC-SHA256 the notify carries a 64-hex sign and no ``sign_type``.
    """
    merchant = order.merchant
    fields = {
        "appid": merchant.appid,
        "mch_id": merchant.mch_id,
        "nonce_str": nonce(),
        "result_code": "SUCCESS",
        "return_code": "SUCCESS",
        **paid_fields(order),
    }
    # NOTE(simulator): MD5 notifies leave sign_type out as well; whether
    # WeChat ever writes sign_type=MD5 into a v2 notify is unconfirmed.
    return signed(fields, merchant.api_key, order.sign_type)


def refund_fields(order: Order, refund: Refund) -> dict[str, str]:
    return {
        "transaction_id": order.transaction_id,
        "out_trade_no": order.out_trade_no,
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "refund_fee": str(refund.refund_fee),
        "settlement_refund_fee": str(refund.refund_fee),
        "total_fee": str(order.total_fee),
        "settlement_total_fee": str(order.total_fee),
        "fee_type": order.fee_type,
        "cash_fee": str(order.cash_fee),
        "cash_refund_fee": str(min(refund.refund_fee, order.cash_fee)),
    }


def refund_queried(order: Order, refunds: list[Refund]) -> dict[str, str]:
    fields = {
        "transaction_id": order.transaction_id,
        "out_trade_no": order.out_trade_no,
        "total_fee": str(order.total_fee),
        "fee_type": order.fee_type,
        "cash_fee": str(order.cash_fee),
        "total_refund_count": str(len(order.refunds)),
        "refund_count": str(len(refunds)),
    }
    for n, refund in enumerate(refunds):
        when = refund.success_time
        fields.update(
            {
                f"out_refund_no_{n}": refund.out_refund_no,
                f"refund_id_{n}": refund.refund_id,
                f"refund_channel_{n}": "ORIGINAL",
                f"refund_fee_{n}": str(refund.refund_fee),
                f"settlement_refund_fee_{n}": str(refund.refund_fee),
                f"refund_status_{n}": refund.refund_status,
                f"refund_account_{n}": "REFUND_SOURCE_UNSETTLED_FUNDS",
                f"refund_recv_accout_{n}": "支付用户零钱",
                f"refund_success_time_{n}": _plain_time(when) if when else "",
            }
        )
    return fields


def refund_notify(order: Order, refund: Refund) -> dict[str, str]:
    """The refund notify: ``req_info`` encrypted, and no ``sign`` at all.

    ``req_info`` is base64 of AES-256-ECB (PKCS#7) over a ``<root>`` XML,
    keyed with the lowercase hex MD5 of the API key.
    """
    merchant = order.merchant
    details = {
        **refund_fields(order, refund),
        "refund_status": refund.refund_status,
        "success_time": _plain_time(refund.success_time or refund.requested_at),
        "refund_recv_accout": "支付用户零钱",
        "refund_account": "REFUND_SOURCE_UNSETTLED_FUNDS",
        "refund_request_source": "API",
    }
    plain = "<root>" + "".join(
        f"<{name}><![CDATA[{value}]]></{name}>" for name, value in details.items()
    )
    plain += "</root>"
    return {
        "return_code": "SUCCESS",
        "appid": merchant.appid,
        "mch_id": merchant.mch_id,
        "nonce_str": nonce(),
        "req_info": encrypt_req_info(plain, merchant.api_key.reveal()),
    }


def encrypt_req_info(plain: str, api_key: str) -> str:
    # NOTE(simulator): MD5 and ECB are WeChat's protocol, not our choice.
    key = hashlib.md5(api_key.encode(), usedforsecurity=False).hexdigest()
    padder = padding.PKCS7(128).padder()
    data = padder.update(plain.encode()) + padder.finalize()
    cipher = Cipher(algorithms.AES(key.encode()), modes.ECB())  # noqa: S305
    encryptor = cipher.encryptor()
    secret = encryptor.update(data) + encryptor.finalize()
    return base64.b64encode(secret).decode()


def callback_request(
    merchant: Merchant, product_id: str, openid: str
) -> dict[str, str]:
    """What WeChat posts to the merchant's mode-1 callback URL.

    NOTE(simulator): the callback carries no sign_type; it is signed with
    the digest the merchant is configured for (unconfirmed what WeChat
    does for HMAC-SHA256 merchants).
    """
    fields = {
        "appid": merchant.appid,
        "openid": openid,
        "mch_id": merchant.mch_id,
        "is_subscribe": "N",
        "nonce_str": nonce(),
        "product_id": product_id,
    }
    return signed(fields, merchant.api_key, merchant.sign_type)


def bill_text(payments: list[Order], refunds: list[tuple[Order, Refund]]) -> str:
    """Write a day's bill as WeChat does: amounts in yuan, backticks."""
    lines = [BILL_HEADER]
    settled = refunded = fees = ordered = 0
    for order in payments:
        fee = _fee(order.total_fee)
        settled += order.total_fee
        ordered += order.total_fee
        fees += fee
        lines.append(
            _bill_row(
                order,
                when=order.paid_at,
                state="SUCCESS",
                settled=order.total_fee,
                coupon=order.coupon_fee,
                refund=None,
                fee=fee,
            )
        )
    for order, refund in refunds:
        fee = -_fee(refund.refund_fee)
        refunded += refund.refund_fee
        fees += fee
        lines.append(
            _bill_row(
                order,
                when=refund.success_time,
                state="REFUND",
                settled=0,
                coupon=0,
                refund=refund,
                fee=fee,
            )
        )
    lines.append(BILL_SUMMARY_HEADER)
    summary = [
        str(len(payments) + len(refunds)),
        _yuan(settled),
        _yuan(refunded),
        _yuan(0),
        _yuan(fees),
        _yuan(ordered),
        _yuan(refunded),
    ]
    lines.append(",".join("`" + value for value in summary))
    return BILL_NEWLINE.join(lines) + BILL_NEWLINE


def _bill_row(
    order: Order,
    *,
    when: datetime | None,
    state: str,
    settled: int,
    coupon: int,
    refund: Refund | None,
    fee: int,
) -> str:
    values: list[Any] = [
        _plain_time(when) if when else "",
        order.merchant.appid,
        order.merchant.mch_id,
        "0",
        order.device_info,
        order.transaction_id,
        order.out_trade_no,
        order.openid,
        order.trade_type,
        state,
        order.bank_type,
        order.fee_type,
        _yuan(settled),
        _yuan(coupon),
        refund.refund_id if refund else "0",
        refund.out_refund_no if refund else "0",
        _yuan(refund.refund_fee if refund else 0),
        _yuan(0),
        "ORIGINAL" if refund else "",
        refund.refund_status if refund else "",
        order.body,
        order.attach,
        _yuan(fee),
        FEE_RATE,
        _yuan(order.total_fee if refund is None else 0),
        _yuan(refund.refund_fee if refund else 0),
        "",
    ]
    return ",".join("`" + str(value) for value in values)


def _fee(amount: int) -> int:
    # 0.6 % rounded half up to the fen.
    return (amount * 6 + 500) // 1000


def _yuan(amount: int) -> str:
    text = Fen(abs(amount)).to_yuan()
    return "-" + text if amount < 0 else text


def _plain_time(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
