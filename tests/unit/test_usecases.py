"""The use cases over the in-memory store and a scripted gateway."""

import threading
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

import pytest

from adapters.memory import InMemoryStore
from adapters.memory import InMemoryUnitOfWork
from domain import usecases
from domain.model import CheckoutMode
from domain.model import Order
from domain.model import Product
from domain.model import TradeState
from domain.money import Fen
from domain.ports import Clock
from domain.ports import PaymentGateway
from domain.ports import Prepay
from domain.ports import StorageUnavailable
from domain.ports import WeChatUnavailable
from domain.signature import SignType
from domain.usecases import NotifyVerdict
from tests.support import cases
from tests.support import rule
from tests.support.cases import merchant


class FixedClock(Clock):
    def __init__(self):
        self.moment = datetime(2024, 1, 1, 2, 0, tzinfo=UTC)

    def now(self):
        return self.moment


class ScriptedGateway(PaymentGateway):
    def __init__(self, fail=False):
        self.requests = []
        self.fail = fail

    def unified_order(self, request):
        self.requests.append(request)
        if self.fail:
            raise WeChatUnavailable("timed out", api="unifiedorder")
        n = len(self.requests)
        return Prepay(f"wx_prepay_{n}", f"weixin://wxpay/bizpayurl?pr=code{n}")

    def query_order(self, out_trade_no):
        raise NotImplementedError

    def close_order(self, out_trade_no):
        raise NotImplementedError


@pytest.fixture
def store():
    store = InMemoryStore()
    with InMemoryUnitOfWork(store) as uow:
        uow.products.save(Product("P001", "Green tea", Fen(100)))
        uow.products.save(Product("P002", "Sold out", Fen(50), available=False))
        uow.orders.add(
            Order(
                out_trade_no=cases.OTN,
                product_id="P001",
                body="Green tea",
                total_fee=Fen(100),
                created_at=FixedClock().now(),
            )
        )
        uow.commit()
    return store


def uow_for(store):
    return InMemoryUnitOfWork(store)


def stored_order(store, out_trade_no=cases.OTN):
    with uow_for(store) as uow:
        return uow.orders.get(out_trade_no)


def notify(store, fields, sign_type=SignType.MD5):
    return usecases.handle_payment_notify(
        uow_for(store), merchant(sign_type), FixedClock(), fields
    )


# --- checkouts ---


def test_a_mode_2_checkout_places_a_native_order_and_shows_its_code(store):
    gateway = ScriptedGateway()

    view = usecases.start_checkout(
        uow_for(store),
        gateway,
        merchant(),
        FixedClock(),
        "P001",
        CheckoutMode.CODE_URL,
    )

    request = gateway.requests[0]
    assert view.status == "NOTPAY"
    assert view.qr_content == "weixin://wxpay/bizpayurl?pr=code1"
    assert view.total_fee == 100
    assert view.expires_at == FixedClock().now() + timedelta(hours=2)
    assert request.total_fee == Fen(100)
    assert request.notify_url == "https://shop.example/wechatpay/notify"
    assert request.out_trade_no == view.out_trade_no
    assert 6 <= len(view.out_trade_no) <= 32


def test_a_mode_1_checkout_signs_a_link_for_its_own_product_id(store):
    gateway = ScriptedGateway()

    view = usecases.start_checkout(
        uow_for(store),
        gateway,
        merchant(),
        FixedClock(),
        "P001",
        CheckoutMode.CALLBACK,
    )

    url = urlsplit(view.qr_content)
    params = dict(parse_qsl(url.query))
    signed_part = {k: v for k, v in params.items() if k != "sign"}
    assert f"{url.scheme}://{url.netloc}{url.path}" == "weixin://wxpay/bizpayurl"
    assert sorted(signed_part) == [
        "appid",
        "mch_id",
        "nonce_str",
        "product_id",
        "time_stamp",
    ]
    assert params["product_id"] == view.id
    assert len(params["product_id"]) <= 32
    assert len(params["time_stamp"]) == 10
    assert params["sign"] == rule.sign_md5(signed_part, cases.KEY)
    assert gateway.requests == []
    assert view.out_trade_no is None


@pytest.mark.parametrize(
    ("product_id", "error"),
    [("NOPE", usecases.UnknownProduct), ("P002", usecases.ProductUnavailable)],
)
def test_a_checkout_needs_an_available_product(store, product_id, error):
    with pytest.raises(error):
        usecases.start_checkout(
            uow_for(store),
            ScriptedGateway(),
            merchant(),
            FixedClock(),
            product_id,
            CheckoutMode.CODE_URL,
        )


def test_a_failed_unifiedorder_is_reported_as_ordering_failed(store):
    with pytest.raises(usecases.OrderingFailed):
        usecases.start_checkout(
            uow_for(store),
            ScriptedGateway(fail=True),
            merchant(),
            FixedClock(),
            "P001",
            CheckoutMode.CODE_URL,
        )


def test_an_unknown_checkout_is_not_found(store):
    with pytest.raises(usecases.CheckoutNotFound):
        usecases.checkout_status(uow_for(store), "ck_missing")


# --- the mode-1 callback ---


def scan(store, gateway, fields):
    return usecases.handle_scan_callback(
        uow_for(store), gateway, merchant(), FixedClock(), fields
    ).reply


def mode_1_checkout(store):
    return usecases.start_checkout(
        uow_for(store),
        ScriptedGateway(),
        merchant(),
        FixedClock(),
        "P001",
        CheckoutMode.CALLBACK,
    )


def assert_signed(reply):
    assert reply["sign"] == rule.sign_md5(reply, cases.KEY)


def test_a_scan_places_the_order_and_answers_a_signed_prepay_id(store):
    checkout = mode_1_checkout(store)
    gateway = ScriptedGateway()
    callback = rule.with_sign(cases.scan_callback(checkout.id), cases.KEY)

    reply = scan(store, gateway, callback)

    assert set(reply) == {
        "return_code",
        "result_code",
        "appid",
        "mch_id",
        "nonce_str",
        "prepay_id",
        "sign",
    }
    assert reply["prepay_id"] == "wx_prepay_1"
    assert_signed(reply)
    request = gateway.requests[0]
    assert request.product_id == checkout.id
    assert request.openid == cases.OPENID
    assert usecases.checkout_status(uow_for(store), checkout.id).out_trade_no


def test_a_static_product_qr_is_sold_at_the_catalogue_price(store):
    gateway = ScriptedGateway()
    callback = rule.with_sign(cases.scan_callback("P001"), cases.KEY)

    reply = scan(store, gateway, callback)

    assert reply["result_code"] == "SUCCESS"
    assert gateway.requests[0].total_fee == Fen(100)
    assert gateway.requests[0].product_id == "P001"


def test_the_same_payer_scanning_again_gets_the_same_prepay_id(store):
    checkout = mode_1_checkout(store)
    gateway = ScriptedGateway()
    callback = rule.with_sign(cases.scan_callback(checkout.id), cases.KEY)

    first = scan(store, gateway, callback)
    second = scan(store, gateway, callback)

    assert first["prepay_id"] == second["prepay_id"]
    assert len(gateway.requests) == 1


@pytest.mark.parametrize(
    ("product_id", "message"),
    [("NOPE", usecases.NO_SUCH_PRODUCT), ("P002", usecases.SOLD_OUT)],
)
def test_an_unsellable_product_gets_a_signed_business_failure(
    store, product_id, message
):
    gateway = ScriptedGateway()
    callback = rule.with_sign(cases.scan_callback(product_id), cases.KEY)

    reply = scan(store, gateway, callback)

    assert reply["return_code"] == "SUCCESS"
    assert reply["result_code"] == "FAIL"
    assert reply["err_code_des"] == message
    assert_signed(reply)
    assert gateway.requests == []


@pytest.mark.parametrize("key", [cases.WRONG_KEY, None])
def test_a_callback_with_a_bad_sign_places_no_order(store, key):
    gateway = ScriptedGateway()
    callback = cases.scan_callback("P001")
    if key:
        callback = rule.with_sign(callback, key)

    reply = scan(store, gateway, callback)

    assert reply["return_code"] == "FAIL"
    assert_signed(reply)
    assert gateway.requests == []


def test_a_slow_or_failing_unifiedorder_gives_a_readable_failure(store):
    callback = rule.with_sign(cases.scan_callback("P001"), cases.KEY)

    reply = scan(store, ScriptedGateway(fail=True), callback)

    assert reply["result_code"] == "FAIL"
    assert reply["err_code_des"] == usecases.TRY_LATER
    assert_signed(reply)


def test_a_paid_checkout_refuses_another_scan(store):
    checkout = mode_1_checkout(store)
    callback = rule.with_sign(cases.scan_callback(checkout.id), cases.KEY)
    scan(store, ScriptedGateway(), callback)
    out_trade_no = usecases.checkout_status(uow_for(store), checkout.id).out_trade_no
    notify(
        store, rule.with_sign(cases.paid_notify(out_trade_no=out_trade_no), cases.KEY)
    )

    reply = scan(store, ScriptedGateway(), callback)

    assert reply["err_code_des"] == usecases.ALREADY_PAID


# --- the payment notify ---


@pytest.mark.parametrize(
    "fields",
    [
        cases.paid_notify(),
        cases.coupon_notify(),
        cases.promotion_notify(),
        cases.paid_notify(attach="", device_info=""),
        cases.paid_notify(sign_type="MD5"),
    ],
    ids=["plain", "C01 coupons", "C02 extensions", "C03 empties", "C05 sign_type"],
)
def test_a_valid_notify_marks_the_order_paid_once(store, fields):
    outcome = notify(store, rule.with_sign(fields, cases.KEY))

    order = stored_order(store)
    assert outcome.verdict is NotifyVerdict.ACCEPTED
    assert order.state is TradeState.SUCCESS
    assert order.transaction_id == cases.TXN
    assert order.time_end == "20240101100000"


def test_c06_an_hmac_notify_without_sign_type_is_accepted(store):
    fields = rule.with_sign(cases.paid_notify(), cases.KEY, "HMAC-SHA256")

    outcome = notify(store, fields, SignType.HMAC_SHA256)

    assert outcome.verdict is NotifyVerdict.ACCEPTED


def test_c06_an_md5_notify_is_refused_by_an_hmac_merchant(store):
    fields = rule.with_sign(cases.paid_notify(), cases.KEY, "MD5")

    outcome = notify(store, fields, SignType.HMAC_SHA256)

    assert outcome.verdict is NotifyVerdict.BAD_SIGN
    assert stored_order(store).state is TradeState.NOTPAY


def forged_notifies():
    unsigned = {"out_trade_no": cases.OTN, "total_fee": "100"}
    return {
        "C07 wrong key": rule.with_sign(cases.paid_notify(), cases.WRONG_KEY),
        "C11a bare": unsigned,
        "C11b result_code, no sign": {**unsigned, "result_code": "SUCCESS"},
        "C11c empty sign": {**cases.paid_notify(), "sign": ""},
        "C01 coupon dropped": {
            k: v
            for k, v in rule.with_sign(cases.coupon_notify(), cases.KEY).items()
            if k != "coupon_id_0"
        },
        "C03 empties signed": {
            **cases.paid_notify(attach=""),
            "sign": rule.sign_md5_keeping_empties(
                cases.paid_notify(attach=""), cases.KEY
            ),
        },
    }


@pytest.mark.parametrize("name", list(forged_notifies()))
def test_a_forged_notify_changes_nothing(store, name, caplog):
    outcome = notify(store, forged_notifies()[name])

    assert outcome.verdict is NotifyVerdict.BAD_SIGN
    assert stored_order(store).state is TradeState.NOTPAY
    assert "SECURITY notify refused" in caplog.text


@pytest.mark.parametrize(
    ("overrides", "verdict"),
    [
        ({"total_fee": "1", "cash_fee": "1"}, NotifyVerdict.MISMATCH),
        ({"fee_type": "USD"}, NotifyVerdict.MISMATCH),
        ({"appid": "wx0000000000fake99"}, NotifyVerdict.WRONG_MERCHANT),
        ({"mch_id": "9990000002"}, NotifyVerdict.WRONG_MERCHANT),
        ({"out_trade_no": "T209901010001"}, NotifyVerdict.UNKNOWN_ORDER),
        ({"result_code": "FAIL"}, NotifyVerdict.NOT_SUCCESS),
        ({"return_code": "FAIL"}, NotifyVerdict.NOT_SUCCESS),
        ({"total_fee": "1.00"}, NotifyVerdict.MISMATCH),
        ({"transaction_id": None}, NotifyVerdict.MISMATCH),
        ({"transaction_id": "4" * 33}, NotifyVerdict.MISMATCH),
        ({"transaction_id": "4200 0000"}, NotifyVerdict.MISMATCH),
        ({"time_end": "2024"}, NotifyVerdict.MISMATCH),
        ({"time_end": "20241301100000"}, NotifyVerdict.MISMATCH),
    ],
)
def test_c12_a_signed_notify_that_does_not_match_the_order_is_refused(
    store, overrides, verdict, caplog
):
    fields = rule.with_sign(cases.paid_notify(**overrides), cases.KEY)

    outcome = notify(store, fields)

    assert outcome.verdict is verdict
    assert not outcome.verdict.acknowledged
    assert stored_order(store).state is TradeState.NOTPAY


def test_c12_a_wrong_amount_raises_an_error_level_alert(store, caplog):
    fields = rule.with_sign(cases.paid_notify(total_fee="1"), cases.KEY)

    notify(store, fields)

    assert any(
        r.levelname == "ERROR" and cases.OTN in r.getMessage() for r in caplog.records
    )


def test_c14_a_repeated_notify_is_acknowledged_and_changes_nothing(store):
    fields = rule.with_sign(cases.paid_notify(), cases.KEY)
    notify(store, fields)
    first = stored_order(store)

    outcome = notify(store, fields)

    assert outcome.verdict is NotifyVerdict.DUPLICATE
    assert stored_order(store) == first


def test_c14_a_notify_after_a_refund_never_moves_the_order_back(store):
    fields = rule.with_sign(cases.paid_notify(), cases.KEY)
    notify(store, fields)
    with uow_for(store) as uow:
        order = uow.orders.get(cases.OTN)
        order.mark_refunded()
        uow.orders.save(order, TradeState.SUCCESS)
        uow.commit()

    outcome = notify(store, fields)

    assert outcome.verdict is NotifyVerdict.DUPLICATE
    assert stored_order(store).state is TradeState.REFUND


def test_a_notify_with_another_transaction_for_a_paid_order_is_refused(store):
    notify(store, rule.with_sign(cases.paid_notify(), cases.KEY))
    other = cases.paid_notify(transaction_id="4200000000202401010000000002")

    outcome = notify(store, rule.with_sign(other, cases.KEY))

    assert outcome.verdict is NotifyVerdict.CONFLICT
    assert stored_order(store).transaction_id == cases.TXN


def test_c14_ten_parallel_copies_make_exactly_one_transition(store):
    fields = rule.with_sign(cases.paid_notify(), cases.KEY)
    outcomes = []
    start = threading.Barrier(10)

    def deliver():
        start.wait()
        outcomes.append(notify(store, fields).verdict)

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes.count(NotifyVerdict.ACCEPTED) == 1
    assert outcomes.count(NotifyVerdict.DUPLICATE) == 9


def test_a_notify_that_cannot_be_stored_raises_so_wechat_retries(store):
    class DeadStore(InMemoryUnitOfWork):
        def __enter__(self):
            raise StorageUnavailable("database is down")

    fields = rule.with_sign(cases.paid_notify(), cases.KEY)

    with pytest.raises(StorageUnavailable):
        usecases.handle_payment_notify(
            DeadStore(store), merchant(), FixedClock(), fields
        )
    assert stored_order(store).state is TradeState.NOTPAY


def test_a_second_payer_cannot_open_another_order_on_a_mode_1_checkout(store):
    checkout = mode_1_checkout(store)
    gateway = ScriptedGateway()
    first = rule.with_sign(cases.scan_callback(checkout.id), cases.KEY)
    second = rule.with_sign(
        {**cases.scan_callback(checkout.id), "openid": "oOTHERpayer"}, cases.KEY
    )

    scan(store, gateway, first)
    reply = scan(store, gateway, second)

    assert reply["result_code"] == "FAIL"
    assert reply["err_code_des"] == usecases.BEING_PAID
    assert len(gateway.requests) == 1


def test_a_second_payer_may_scan_once_the_first_order_expired(store):
    checkout = mode_1_checkout(store)
    gateway = ScriptedGateway()
    first = rule.with_sign(cases.scan_callback(checkout.id), cases.KEY)
    second = rule.with_sign(
        {**cases.scan_callback(checkout.id), "openid": "oOTHERpayer"}, cases.KEY
    )
    scan(store, gateway, first)
    later = FixedClock()
    later.moment += timedelta(hours=2, seconds=1)

    outcome = usecases.handle_scan_callback(
        uow_for(store), gateway, merchant(), later, second
    )

    assert outcome.reply["result_code"] == "SUCCESS"
    assert len(gateway.requests) == 2


def test_a_checkout_paid_by_two_orders_raises_a_refund_alert(store, caplog):
    checkout = mode_1_checkout(store)
    for number, openid in enumerate(["oPayerA", "oPayerB"], start=1):
        with uow_for(store) as uow:
            uow.orders.add(
                Order(
                    out_trade_no=f"T2024010200{number:02d}",
                    product_id="P001",
                    body="Green tea",
                    total_fee=Fen(100),
                    created_at=FixedClock().now(),
                    checkout_id=checkout.id,
                    openid=openid,
                )
            )
            uow.commit()
    for number in (1, 2):
        fields = cases.paid_notify(
            out_trade_no=f"T2024010200{number:02d}",
            transaction_id=f"42000000002024010100000000{number:02d}",
        )
        notify(store, rule.with_sign(fields, cases.KEY))

    alerts = [r for r in caplog.records if "paid twice" in r.getMessage()]
    assert len(alerts) == 1
    assert alerts[0].levelname == "ERROR"
    assert "T2024010200" in alerts[0].getMessage()


@pytest.mark.parametrize("product_id", ["\ud800", "a" * 33, "../P001", ""])
def test_a_checkout_for_an_impossible_product_id_is_unknown(store, product_id):
    with pytest.raises(usecases.UnknownProduct):
        usecases.start_checkout(
            uow_for(store),
            ScriptedGateway(),
            merchant(),
            FixedClock(),
            product_id,
            CheckoutMode.CODE_URL,
        )


def test_a_price_beyond_wechats_int_is_refused():
    from domain.model import InvalidProduct

    with pytest.raises(InvalidProduct):
        Product("P9", "Gold", Fen(2**31))


def test_a_product_name_fits_wechats_127_byte_body():
    from domain.model import InvalidProduct

    Product("P9", "茶" * 42, Fen(1))
    with pytest.raises(InvalidProduct, match="bytes"):
        Product("P9", "茶" * 43, Fen(1))
