"""The fake merchant and messages of shared/cases (every value is fake)."""

from domain.merchant import Merchant
from domain.signature import ApiKey
from domain.signature import SignType

APPID = "wx0000000000fake01"
MCH_ID = "9990000001"
KEY = "TESTKEY0TESTKEY0TESTKEY0TESTKEY0"
WRONG_KEY = "OTHERKEY0THERKEY0THERKEY0THERKEY"
OPENID = "oFAKEopenid0000000000000000x"
TXN = "4200000000202401010000000001"
OTN = "T202401010001"
NONCE = "nonce0000000000000000000000000AA"
NOTIFY_URL = "https://shop.example/wechatpay/notify"


def merchant(sign_type=SignType.MD5, notify_url=NOTIFY_URL):
    """The fake merchant as the domain sees it."""
    return Merchant(
        appid=APPID,
        mch_id=MCH_ID,
        api_key=ApiKey(KEY),
        sign_type=sign_type,
        notify_url=notify_url,
    )


def paid_notify(**overrides):
    """C01's notify without coupons: a plain, unsigned payment result."""
    fields = {
        "appid": APPID,
        "bank_type": "OTHERS",
        "cash_fee": "100",
        "fee_type": "CNY",
        "is_subscribe": "N",
        "mch_id": MCH_ID,
        "nonce_str": NONCE,
        "openid": OPENID,
        "out_trade_no": OTN,
        "result_code": "SUCCESS",
        "return_code": "SUCCESS",
        "time_end": "20240101100000",
        "total_fee": "100",
        "trade_type": "NATIVE",
        "transaction_id": TXN,
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def coupon_notify():
    """C01 as given: paid partly with a voucher, numbered fields included."""
    return paid_notify(
        cash_fee="90",
        coupon_count="1",
        coupon_fee="10",
        coupon_fee_0="10",
        coupon_id_0="2000000000000000001",
    )


def promotion_notify():
    """C02: extension fields a closed model would drop."""
    return paid_notify(
        cash_fee="95",
        version="1.0",
        promotion_detail=(
            '{"promotion_detail":[{"promotion_id":"1","amount":5,"type":"DISCOUNT"}]}'
        ),
        rate_value="100000",
    )


def scan_callback(product_id="P001"):
    """C20: what WeChat posts when a mode-1 QR is scanned."""
    return {
        "appid": APPID,
        "openid": OPENID,
        "mch_id": MCH_ID,
        "is_subscribe": "N",
        "nonce_str": NONCE,
        "product_id": product_id,
    }
