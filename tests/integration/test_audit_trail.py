"""Every raw notify and callback is kept with its verdict, and read back.

The app runs as production wraps it (``production_stack``), so request
ids and the client address come from the real middleware.
"""

import json
import logging
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from falcon import testing

from adapters import alembic_migrations
from adapters.memory import InMemoryUnitOfWork
from adapters.sqlalchemy_store import SqlAlchemyUnitOfWork
from adapters.sqlalchemy_store import create_engine_for
from adapters.xml_codec import XmlLimits
from domain.model import TradeState
from entrypoints import cli
from entrypoints.app import create_app
from entrypoints.app import production_stack
from tests.support import cases
from tests.support import rule
from tests.support.checkout_app import NOTIFY_OK
from tests.support.checkout_app import audit_trail
from tests.support.checkout_app import seed
from tests.support.checkout_app import seeded_store
from tests.support.checkout_app import service_over
from tests.support.checkout_app import signed_xml
from tests.support.checkout_app import stored_order
from tests.support.fakes import BrokenUnitOfWork
from tests.support.fakes import FakeGateway
from tests.support.fakes import FixedClock

LIMIT = 16 * 1024
# What is kept of a message refused before its signature was checked.
KEPT_UNVERIFIED = 2 * 1024
NOTIFY = "/wechatpay/notify"
CALLBACK = "/wechatpay/callback"


@pytest.fixture
def clock():
    return FixedClock()


@pytest.fixture
def store(clock):
    return seeded_store(clock)


@pytest.fixture
def gateway():
    return FakeGateway()


def client_for(service):
    app = production_stack(create_app(service), {"WXPAY_TRUSTED_PROXIES": ""})
    return testing.TestClient(app)


@pytest.fixture
def client(store, gateway, clock):
    limits = XmlLimits(max_bytes=LIMIT)
    return client_for(service_over(store, gateway, clock, xml_limits=limits))


def post(client, path, body, **options):
    return client.simulate_post(
        path,
        body=body,
        headers={"Content-Type": "text/xml", "X-Request-ID": "rid-audit-1"},
        remote_addr="203.0.113.9",
        **options,
    )


def the_one_record(store):
    records = audit_trail(store)
    assert len(records) == 1, records
    return records[0]


# --- notifies -------------------------------------------------------------


def test_an_accepted_notify_is_kept_whole_with_who_sent_it(client, store, clock):
    body = signed_xml(cases.paid_notify())

    result = post(client, NOTIFY, body)

    assert result.content == NOTIFY_OK
    record = the_one_record(store)
    assert (record.kind, record.verdict) == ("notify", "accepted")
    assert record.out_trade_no == cases.OTN
    assert record.body == body.decode()
    assert record.remote_addr == "203.0.113.9"
    assert record.request_id == "rid-audit-1"
    assert record.received_at == clock.now()


@pytest.mark.parametrize(
    ("fields", "key", "verdict"),
    [
        (cases.paid_notify(), cases.WRONG_KEY, "bad_sign"),
        (cases.paid_notify(total_fee="1", cash_fee="1"), cases.KEY, "mismatch"),
        (cases.paid_notify(out_trade_no="T404"), cases.KEY, "unknown_order"),
        (cases.paid_notify(result_code="FAIL"), cases.KEY, "not_success"),
        (cases.paid_notify(mch_id="9990000099"), cases.KEY, "wrong_merchant"),
    ],
    ids=["bad sign", "mismatch", "unknown order", "not success", "merchant"],
)
def test_a_refused_notify_is_kept_with_its_verdict(client, store, fields, key, verdict):
    result = post(client, NOTIFY, signed_xml(fields, key))

    assert rule.parse(result.content)["return_code"] == "FAIL"
    record = the_one_record(store)
    assert (record.kind, record.verdict) == ("notify", verdict)
    assert record.out_trade_no == fields["out_trade_no"]
    assert stored_order(store).state is TradeState.NOTPAY


def test_a_duplicate_notify_is_kept_as_a_second_record(client, store):
    post(client, NOTIFY, signed_xml(cases.paid_notify()))
    post(client, NOTIFY, signed_xml(cases.paid_notify()))

    verdicts = [record.verdict for record in audit_trail(store)]

    assert verdicts == ["duplicate", "accepted"]


@pytest.mark.parametrize(
    ("body", "verdict"),
    [
        (b"", "xml_rejected:POST_DATA_EMPTY"),
        (b"not xml", "xml_rejected:XML_FORMAT_ERROR"),
        (b"<xml><a>\xff\xfe</a></xml>", "xml_rejected:NOT_UTF8"),
    ],
)
def test_an_unreadable_notify_is_kept_with_the_codecs_reason(
    client, store, body, verdict
):
    post(client, NOTIFY, body)

    record = the_one_record(store)
    assert record.verdict == verdict
    assert record.out_trade_no == ""
    assert record.body == body.decode("utf-8", errors="replace")


def test_an_oversized_body_keeps_only_its_first_2_kib(client, store):
    body = b"<xml><a>" + b"x" * 100_000 + b"</a></xml>"

    post(
        client,
        NOTIFY,
        body,
        extras={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
    )

    record = the_one_record(store)
    assert record.verdict == "xml_rejected:XML_FORMAT_ERROR"
    # Nothing past the size limit is ever read, so N counts up to it.
    dropped = LIMIT - KEPT_UNVERIFIED
    assert record.body == (
        body[:KEPT_UNVERIFIED].decode() + f"…[truncated {dropped} bytes]"
    )


def long_notify(**overrides):
    # attach is a field WeChat echoes; any length up to the XML limit.
    return cases.paid_notify(attach="a" * 10_000, **overrides)


@pytest.mark.parametrize(
    ("key", "verdict"),
    [(cases.WRONG_KEY, "bad_sign"), (None, "xml_rejected:XML_FORMAT_ERROR")],
    ids=["bad sign", "unreadable"],
)
def test_a_long_message_refused_before_its_signature_is_cut_to_2_kib(
    client, store, key, verdict
):
    if key is None:
        body = signed_xml(long_notify()) + b"<trailing/>"
    else:
        body = signed_xml(long_notify(), key)

    post(client, NOTIFY, body)

    record = the_one_record(store)
    assert record.verdict == verdict
    dropped = len(body) - KEPT_UNVERIFIED
    assert record.body == (
        body[:KEPT_UNVERIFIED].decode() + f"…[truncated {dropped} bytes]"
    )


@pytest.mark.parametrize(
    ("fields", "verdict"),
    [
        (long_notify(), "accepted"),
        (long_notify(total_fee="1", cash_fee="1"), "mismatch"),
        (long_notify(out_trade_no="T404"), "unknown_order"),
    ],
    ids=["accepted", "mismatch", "unknown order"],
)
def test_a_long_message_whose_signature_verified_is_kept_whole(
    client, store, fields, verdict
):
    body = signed_xml(fields)

    post(client, NOTIFY, body)

    record = the_one_record(store)
    assert record.verdict == verdict
    assert len(body) > 10_000
    assert record.body == body.decode()


def test_a_forged_callback_is_cut_to_2_kib(client, store):
    fields = {**cases.scan_callback(), "attach": "a" * 10_000}
    body = signed_xml(fields, cases.WRONG_KEY)

    post(client, CALLBACK, body)

    record = the_one_record(store)
    assert record.verdict == "bad_sign"
    assert record.body.startswith(body[:KEPT_UNVERIFIED].decode())
    assert record.body.endswith(f"…[truncated {len(body) - KEPT_UNVERIFIED} bytes]")


def test_a_message_is_stamped_when_it_arrived_not_when_judged(store, gateway, clock):
    # unifiedorder takes 3 s; the callback arrived before it was placed.
    arrived = clock.now()
    placed = gateway.unified_order

    def slow_unified_order(request):
        clock.moment += timedelta(seconds=3)
        return placed(request)

    gateway.unified_order = slow_unified_order
    client = client_for(service_over(store, gateway, clock))

    post(client, CALLBACK, signed_xml(cases.scan_callback("P001")))

    record = the_one_record(store)
    assert record.verdict == "prepay"
    assert record.received_at == arrived


def test_a_long_forged_out_trade_no_is_cut_to_the_column(client, store):
    fields = cases.paid_notify(out_trade_no="T" * 300)

    post(client, NOTIFY, signed_xml(fields, cases.WRONG_KEY))

    record = the_one_record(store)
    assert record.out_trade_no == "T" * 32
    assert "T" * 300 in record.body


# --- callbacks ------------------------------------------------------------


def test_a_prepay_callback_is_kept_with_the_order_it_placed(client, store, gateway):
    result = post(client, CALLBACK, signed_xml(cases.scan_callback("P001")))

    assert rule.parse(result.content)["result_code"] == "SUCCESS"
    record = the_one_record(store)
    assert (record.kind, record.verdict) == ("callback", "prepay")
    assert record.out_trade_no == gateway.requests[0].out_trade_no


@pytest.mark.parametrize(
    ("fields", "key", "verdict"),
    [
        (cases.scan_callback(), cases.WRONG_KEY, "bad_sign"),
        (
            {**cases.scan_callback(), "mch_id": "9990000099"},
            cases.KEY,
            "wrong_merchant",
        ),
        (cases.scan_callback("P404"), cases.KEY, "unknown_product"),
        (cases.scan_callback("P009"), cases.KEY, "sold_out"),
    ],
    ids=["bad sign", "merchant", "unknown product", "sold out"],
)
def test_a_refused_callback_is_kept_with_its_verdict(
    client, store, gateway, fields, key, verdict
):
    post(client, CALLBACK, signed_xml(fields, key))

    record = the_one_record(store)
    assert (record.kind, record.verdict) == ("callback", verdict)
    assert gateway.requests == []


def test_a_callback_wechat_would_not_order_is_kept_as_wechat_failed(
    client, store, gateway
):
    gateway.fail_with()

    post(client, CALLBACK, signed_xml(cases.scan_callback()))

    record = the_one_record(store)
    assert record.verdict == "wechat_failed"
    assert record.out_trade_no == gateway.requests[0].out_trade_no


def test_an_unreadable_callback_is_kept_with_the_codecs_reason(client, store):
    post(client, CALLBACK, b"<!DOCTYPE xml><xml/>")

    assert the_one_record(store).verdict == "xml_rejected:XML_FORMAT_ERROR"


def test_a_callback_that_failed_inside_is_kept_as_error(store, gateway, clock):
    # The use case's unit of work is down; the audit's (the next) is not.
    units = iter([BrokenUnitOfWork()])

    def uow_factory():
        return next(units, None) or InMemoryUnitOfWork(store)

    client = client_for(service_over(store, gateway, clock, uow_factory=uow_factory))

    result = post(client, CALLBACK, signed_xml(cases.scan_callback()))

    assert rule.parse(result.content)["result_code"] == "FAIL"
    assert the_one_record(store).verdict == "error"


# --- a failing audit write ------------------------------------------------


class AuditDown(InMemoryUnitOfWork):
    """Storage that works, except that the audit trail cannot be written."""

    def __enter__(self):
        super().__enter__()
        self.inbound.record = self._refuse
        return self

    @staticmethod
    def _refuse(message):
        raise RuntimeError("inbound_messages is not writable")


def test_a_failing_audit_write_changes_no_reply_and_is_logged(
    store, gateway, clock, caplog
):
    factory = lambda: AuditDown(store)  # noqa: E731
    client = client_for(service_over(store, gateway, clock, uow_factory=factory))

    notify = post(client, NOTIFY, signed_xml(cases.paid_notify()))
    scan = post(client, CALLBACK, signed_xml(cases.scan_callback()))

    assert notify.content == NOTIFY_OK
    assert stored_order(store).state is TradeState.SUCCESS
    assert rule.parse(scan.content)["result_code"] == "SUCCESS"
    assert audit_trail(store) == []
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all("audit trail not written" in r.getMessage() for r in errors)


def test_storage_down_still_answers_and_logs_the_lost_record(
    store, gateway, clock, caplog
):
    service = service_over(store, gateway, clock, uow_factory=BrokenUnitOfWork)
    client = client_for(service)

    result = post(client, NOTIFY, signed_xml(cases.paid_notify()))

    assert rule.parse(result.content)["return_code"] == "FAIL"
    assert any("audit trail not written" in r.getMessage() for r in caplog.records)


# --- wxpay audit, on a migrated SQLite file -------------------------------


@pytest.fixture
def sqlite_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/wxpay.sqlite3"
    monkeypatch.setenv("WXPAY_DATABASE_URL", url)
    return url


@pytest.fixture
def sql_client(sqlite_url, gateway, clock):
    engine = create_engine_for(sqlite_url)
    alembic_migrations.upgrade(engine)
    with SqlAlchemyUnitOfWork(engine) as uow:
        seed(uow, clock)

    def factory():
        return SqlAlchemyUnitOfWork(engine)

    yield client_for(service_over(None, gateway, clock, uow_factory=factory))
    engine.dispose()


def wxpay_audit(capsys, *argv):
    status = cli.main(["audit", *argv])
    out, err = capsys.readouterr()
    return status, [line.split("\t") for line in out.splitlines()], err


def test_wxpay_audit_prints_each_message_newest_first(sql_client, capsys):
    post(sql_client, NOTIFY, signed_xml(cases.paid_notify(), cases.WRONG_KEY))
    post(sql_client, NOTIFY, signed_xml(cases.paid_notify()))
    post(sql_client, CALLBACK, signed_xml(cases.scan_callback("P404")))
    post(sql_client, CALLBACK, signed_xml(cases.scan_callback("P001")))

    status, lines, _ = wxpay_audit(capsys)

    assert status == 0
    assert [line[1:3] for line in lines] == [
        ["callback", "prepay"],
        ["callback", "unknown_product"],
        ["notify", "accepted"],
        ["notify", "bad_sign"],
    ]
    received_at, _, _, out_trade_no, remote, request_id = lines[2]
    assert received_at == FixedClock().now().isoformat()
    assert (out_trade_no, remote, request_id) == (
        cases.OTN,
        "203.0.113.9",
        "rid-audit-1",
    )
    assert lines[1][3] == "-"


def test_wxpay_audit_filters_and_shows_bodies(sql_client, capsys):
    bad = signed_xml(cases.paid_notify(), cases.WRONG_KEY)
    post(sql_client, NOTIFY, bad)
    post(sql_client, NOTIFY, signed_xml(cases.paid_notify()))
    post(sql_client, CALLBACK, signed_xml(cases.scan_callback("P001")))

    assert len(wxpay_audit(capsys, "--kind", "notify")[1]) == 2
    assert len(wxpay_audit(capsys, "--limit", "1")[1]) == 1
    assert len(wxpay_audit(capsys, "--out-trade-no", cases.OTN)[1]) == 2
    _, lines, _ = wxpay_audit(capsys, "--verdict", "bad_sign", "--body")
    (line,) = lines
    assert json.loads(line[6]) == bad.decode()


def test_wxpay_audit_escapes_what_a_stranger_wrote(sql_client, capsys):
    # U+009B is a terminal's CSI, as ESC [ is; XML allows it, and tabs.
    fields = cases.paid_notify(out_trade_no="T1\x9b2J\tx")

    post(sql_client, NOTIFY, signed_xml(fields, cases.WRONG_KEY))

    status = cli.main(["audit", "--body"])
    out = capsys.readouterr().out
    assert status == 0
    assert "\x9b" not in out
    assert out.count("\t") == 6
    assert "\tT1\\u009b2J\\u0009x\t" in out


def test_wxpay_audit_prune_deletes_only_messages_older_than_the_days(
    sql_client, clock, capsys
):
    now = datetime.now(UTC)
    clock.moment = now - timedelta(days=31)
    post(sql_client, NOTIFY, signed_xml(cases.paid_notify(), cases.WRONG_KEY))
    post(sql_client, CALLBACK, signed_xml(cases.scan_callback("P404")))
    clock.moment = now - timedelta(days=29)
    post(sql_client, NOTIFY, signed_xml(cases.paid_notify()))

    status = cli.main(["audit", "prune", "--older-than", "30"])

    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith("pruned 2 messages received before ")
    _, lines, _ = wxpay_audit(capsys)
    assert [line[1:3] for line in lines] == [["notify", "accepted"]]
    assert wxpay_audit(capsys, "list", "--kind", "notify")[1] == lines


@pytest.mark.parametrize(
    "argv",
    [
        ["prune"],
        ["prune", "--older-than", "0"],
        ["prune", "--older-than", "30", "--kind", "notify"],
        ["prune", "--older-than", "30", "--limit", "5"],
        ["--older-than", "30"],
    ],
    ids=["no days", "zero days", "a filter", "a limit", "without prune"],
)
def test_wxpay_audit_prune_refuses_what_it_would_misread(sqlite_url, capsys, argv):
    status, _, err = wxpay_audit(capsys, *argv)

    assert status == 2
    assert "--older-than" in err


def test_wxpay_audit_on_an_unmigrated_database_says_to_upgrade(sqlite_url, capsys):
    status, _, err = wxpay_audit(capsys)

    assert status == 1
    assert "wxpay db upgrade" in err


def test_wxpay_audit_refuses_a_limit_below_one(sqlite_url, capsys):
    assert wxpay_audit(capsys, "--limit", "0")[0] == 2
