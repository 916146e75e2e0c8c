"""Who we are to WeChat, and the mode-1 QR link signed in our name."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from urllib.parse import urlencode

from domain.signature import ApiKey
from domain.signature import SignType
from domain.signature import sign

BIZPAYURL = "weixin://wxpay/bizpayurl"


@dataclass(frozen=True)
class Merchant:
    """The merchant identity every message is signed and checked with."""

    appid: str
    mch_id: str
    api_key: ApiKey = field(repr=False)
    sign_type: SignType
    notify_url: str
    # WeChat wants, for NATIVE, the IP of the machine calling its API.
    server_ip: str = "127.0.0.1"


def bizpayurl(
    merchant: Merchant, product_id: str, time_stamp: int, nonce_str: str
) -> str:
    """Build a mode-1 QR link for ``product_id``.

    The sign covers exactly ``appid, mch_id, nonce_str, product_id,
    time_stamp``; ``time_stamp`` is Unix seconds (10 digits).

    NOTE(mode1): the link has no ``sign_type`` field, so it is always
    signed with MD5, as every SDK does; whether WeChat would accept HMAC
    here is unconfirmed, and the strict reading is not to rely on it.
    """
    if not 10**9 <= time_stamp < 10**10:
        raise ValueError("time_stamp must be Unix seconds (10 digits)")
    fields = {
        "appid": merchant.appid,
        "mch_id": merchant.mch_id,
        "nonce_str": nonce_str,
        "product_id": product_id,
        "time_stamp": str(time_stamp),
    }
    signature = sign(fields, merchant.api_key, SignType.MD5)
    return f"{BIZPAYURL}?{urlencode({'sign': signature, **fields})}"
