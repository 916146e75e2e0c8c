"""What our strictness costs, as ratios against a common baseline.

Run with ``make bench``. Prints, never asserts: these are numbers to
watch, not tests. Each line compares our code with wechatpy 1.8.18 (the
field's most used SDK, test-only here) doing the same job its lax way:

- parsing a notify: our hardened lxml codec vs. wechatpy's xmltodict;
- verifying its signature: ours (every field, constant time) vs.
  wechatpy's ``calculate_signature`` and ``==``;
- answering a whole notify in-process (Falcon, in-memory store) vs.
  parsing and verifying alone, i.e. the share the framework adds.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

import xmltodict
from falcon import testing
from wechatpy.pay.utils import calculate_signature

from adapters import xml_codec
from adapters.memory import InMemoryStore
from adapters.memory import InMemoryUnitOfWork
from domain.merchant import Merchant
from domain.model import Order
from domain.model import TradeState
from domain.money import Fen
from domain.signature import ApiKey
from domain.signature import SignType
from domain.signature import verify
from entrypoints.app import create_app
from entrypoints.bootstrap import Service
from tests.support import cases
from tests.support import rule
from tests.support.fakes import FakeGateway
from tests.support.fakes import FixedClock

KEY = ApiKey(cases.KEY)
NOTIFY = rule.to_xml(rule.with_sign(cases.coupon_notify(), cases.KEY))


def per_second(action: Callable[[], object], seconds: float = 1.0) -> float:
    """Calls per second, best of three runs of about ``seconds`` each."""
    timer = timeit.Timer(action)
    count, _ = timer.autorange()
    best = min(timer.repeat(repeat=3, number=count))
    return count / best


def ours_parse() -> object:
    return xml_codec.parse(NOTIFY)


def theirs_parse() -> object:
    return xmltodict.parse(NOTIFY)["xml"]


FIELDS = xml_codec.parse(NOTIFY)


def ours_verify() -> None:
    verify(FIELDS, KEY, SignType.MD5)


def theirs_verify() -> bool:
    data = dict(FIELDS)
    sign = data.pop("sign")
    return calculate_signature(data, cases.KEY) == sign


def notify_client() -> tuple[testing.TestClient, Callable[[], None]]:
    store = InMemoryStore()
    merchant = Merchant(
        appid=cases.APPID,
        mch_id=cases.MCH_ID,
        api_key=KEY,
        sign_type=SignType.MD5,
        notify_url="http://127.0.0.1/wechatpay/notify",
    )
    service = Service(
        merchant=merchant,
        uow_factory=lambda: InMemoryUnitOfWork(store),
        gateway=FakeGateway(),
        clock=FixedClock(),
    )
    with InMemoryUnitOfWork(store) as uow:
        uow.orders.add(
            Order(
                out_trade_no=cases.OTN,
                product_id="P001",
                body="Green tea",
                total_fee=Fen(100),
                created_at=FixedClock().now(),
                state=TradeState.SUCCESS,
                transaction_id=cases.TXN,
                time_end="20240101100000",
            )
        )
        uow.commit()
    client = testing.TestClient(create_app(service))

    def post() -> None:
        result = client.simulate_post("/wechatpay/notify", body=NOTIFY)
        assert result.status_code == 200

    return client, post


def main() -> None:
    parse_ours, parse_theirs = per_second(ours_parse), per_second(theirs_parse)
    verify_ours = per_second(ours_verify)
    verify_theirs = per_second(theirs_verify)
    _, post = notify_client()
    answer = per_second(post)
    parse_and_verify = 1 / (1 / parse_ours + 1 / verify_ours)

    print(
        f"parse a notify      ours/wechatpy = {parse_ours / parse_theirs:.2f}"
        f"  ({parse_ours:,.0f}/s vs {parse_theirs:,.0f}/s)"
    )
    print(
        f"verify its sign     ours/wechatpy = {verify_ours / verify_theirs:.2f}"
        f"  ({verify_ours:,.0f}/s vs {verify_theirs:,.0f}/s)"
    )
    print(
        f"answer a duplicate  whole/parse+verify = "
        f"{answer / parse_and_verify:.2f}  ({answer:,.0f}/s)"
    )


if __name__ == "__main__":
    main()
