"""Many copies of one notify at once record the payment exactly once.

The real stack: gunicorn workers (separate processes, each with its own
connection pool) over one PostgreSQL or MariaDB database. Only the
database can arbitrate between them: the compare-and-set UPDATE and the
unique transaction_id.
"""

import contextlib
from collections import Counter

import pytest

from tests.deploy import stack
from tests.support.processes import free_port
from tests.support.service import checkout_service

pytestmark = pytest.mark.e2e

COPIES = 200
PAID = r"order paid out_trade_no={}"
ANSWERED = r"notify answered out_trade_no={} verdict={}"


@contextlib.contextmanager
def gunicorns(make_env, backend, log_dir, workers_each):
    """Start one gunicorn per item of ``workers_each`` over one database.

    Yields the environment, and the base URL and log file of each.
    """
    ports = [free_port() for _ in workers_each]
    env = make_env(backend, public_url=f"http://127.0.0.1:{ports[0]}")
    with contextlib.ExitStack() as started:
        running = []
        for port, workers in zip(ports, workers_each, strict=True):
            url, _ = started.enter_context(
                checkout_service(env, log_dir, port=port, workers=workers)
            )
            running.append((url, log_dir / f"service-{port}.log"))
        yield env, running


def count_in_logs(logs, pattern):
    return sum(len(stack.log_lines(log, pattern)) for log in logs)


def assert_paid_exactly_once(env, logs, checkout, transaction_id, result):
    out_trade_no = checkout["out_trade_no"]

    assert result.errors == []
    assert len(result.replies) == COPIES
    assert {reply.status for reply in result.replies} == {200}
    assert {reply.body for reply in result.replies} == {stack.NOTIFY_OK}

    assert count_in_logs(logs, PAID.format(out_trade_no)) == 1
    assert count_in_logs(logs, ANSWERED.format(out_trade_no, "accepted")) == 1
    duplicates = count_in_logs(logs, ANSWERED.format(out_trade_no, "duplicate"))
    assert duplicates == COPIES - 1

    row = stack.stored_order(env["WXPAY_DATABASE_URL"], out_trade_no)
    assert row.state == "SUCCESS"
    assert row.transaction_id == transaction_id
    assert row.time_end == "20240101100000"
    assert row.paid_at is not None
    return row


def prove_exactly_once(make_env, backend, log_dir, workers_each, label):
    with gunicorns(make_env, backend, log_dir, workers_each) as (env, running):
        urls = [url for url, _ in running]
        logs = [log for _, log in running]
        checkout = stack.start_checkout(urls[0])
        transaction_id = stack.new_transaction_id()
        notify = stack.paid_notify_for(checkout, transaction_id)

        result = stack.volley(urls, notify, copies=COPIES)
        result.report(label)

        first = assert_paid_exactly_once(env, logs, checkout, transaction_id, result)
        late = stack.post_notify(urls[-1], notify)
        assert (late.status, late.body) == (200, stack.NOTIFY_OK)
        again = stack.stored_order(env["WXPAY_DATABASE_URL"], first.out_trade_no)
        assert (again.paid_at, again.updated_at) == (first.paid_at, first.updated_at)
        audit = stack.audit_rows(
            env["WXPAY_DATABASE_URL"], kind="notify", out_trade_no=first.out_trade_no
        )
        verdicts = Counter(row.verdict for row in audit)
        assert verdicts == {"accepted": 1, "duplicate": COPIES}


def test_200_copies_on_four_workers_pay_once_on_postgresql(fresh_service_env, tmp_path):
    prove_exactly_once(
        fresh_service_env, "postgresql", tmp_path, [4], "PostgreSQL, 4 workers"
    )


def test_200_copies_split_over_two_instances_pay_once_on_postgresql(
    fresh_service_env, tmp_path
):
    prove_exactly_once(
        fresh_service_env,
        "postgresql",
        tmp_path,
        [2, 2],
        "PostgreSQL, 2 instances x 2 workers",
    )


def test_200_copies_on_four_workers_pay_once_on_mariadb(fresh_service_env, tmp_path):
    prove_exactly_once(
        fresh_service_env, "mariadb", tmp_path, [4], "MariaDB, 4 workers"
    )
