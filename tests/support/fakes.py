"""Stand-ins for the ports, shared by the test tiers."""

import threading
from datetime import UTC
from datetime import datetime

from domain.ports import Clock
from domain.ports import OrderStatus
from domain.ports import PaymentGateway
from domain.ports import Prepay
from domain.ports import StorageUnavailable
from domain.ports import UnitOfWork
from domain.ports import WeChatRejected
from domain.ports import WeChatUnavailable


class FixedClock(Clock):
    """A clock that says what it is told; 2024-01-01 02:00 UTC at first."""

    def __init__(self, moment=None):
        self.moment = moment or datetime(2024, 1, 1, 2, 0, tzinfo=UTC)

    def now(self):
        return self.moment


class FakeGateway(PaymentGateway):
    """WeChat's merchant API, scripted.

    Records every request; ``unified_order`` answers numbered prepay ids
    and code_urls. ``fail_with(error)`` makes the next calls raise it;
    ``hang(seconds)`` makes them wait first and then raise
    WeChatUnavailable, as the real gateway does when its deadline passes.

    ``answer_query(out_trade_no, *answers)`` and ``answer_close(...)``
    script orderquery and closeorder, one answer per call, in order: an
    OrderStatus (query only), an exception to raise, or a function called
    first (to let something happen "at WeChat's" meanwhile) whose result
    is then used. Unscripted queries answer NOTPAY; closes succeed.
    ``queries`` and ``closes`` list the out_trade_no of every call.
    """

    def __init__(self):
        self.requests = []
        self.closed = []
        self.queries = []
        self.closes = []
        self.failure = None
        self.hang_seconds = 0.0
        self._query_answers = {}
        self._close_answers = {}
        self._lock = threading.Lock()

    def answer_query(self, out_trade_no, *answers):
        self._query_answers.setdefault(out_trade_no, []).extend(answers)
        return self

    def answer_close(self, out_trade_no, *answers):
        self._close_answers.setdefault(out_trade_no, []).extend(answers)
        return self

    def _scripted(self, script, out_trade_no, default):
        with self._lock:
            answers = script.get(out_trade_no)
            answer = answers.pop(0) if answers else default
        if callable(answer) and not isinstance(answer, type):
            answer = answer()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def fail_with(self, error=None):
        self.failure = error or WeChatRejected(
            "SYSTEMERROR", api="unifiedorder", err_code="SYSTEMERROR"
        )
        return self

    def hang(self, seconds):
        self.hang_seconds = seconds
        return self

    def _call(self):
        if self.hang_seconds:
            threading.Event().wait(self.hang_seconds)
            raise WeChatUnavailable("deadline passed", api="unifiedorder")
        if self.failure is not None:
            raise self.failure

    def unified_order(self, request):
        with self._lock:
            self.requests.append(request)
            n = len(self.requests)
        self._call()
        return Prepay(f"wx_fake_prepay_{n}", f"weixin://wxpay/bizpayurl?pr=fake{n}")

    def query_order(self, out_trade_no):
        self.queries.append(out_trade_no)
        self._call()
        unpaid = OrderStatus(out_trade_no, "NOTPAY", None, "", "")
        return self._scripted(self._query_answers, out_trade_no, unpaid)

    def close_order(self, out_trade_no):
        self.closes.append(out_trade_no)
        self._call()
        self._scripted(self._close_answers, out_trade_no, None)
        self.closed.append(out_trade_no)


class BrokenUnitOfWork(UnitOfWork):
    """A store that cannot be reached: every transaction fails."""

    def __enter__(self):
        raise StorageUnavailable("the database is down")

    def commit(self):
        raise StorageUnavailable("the database is down")

    def rollback(self):
        pass
