"""``wxpay reconcile``: settle unpaid orders by asking WeChat.

For cron or a systemd timer (``deploy/systemd/wxpay-reconcile.timer``):
each run asks WeChat (orderquery) about the orders still NOTPAY some
minutes after they were placed, records the ones paid whose notify never
came, and closes the abandoned ones. Prints one line per order,
``out_trade_no before -> after reason``; the log lines go to stderr.

Exit 0 when the run went through, even if WeChat failed for some orders
(they are left for the next run); 1 when the run itself could not (the
settings, or a database that does not answer or is not migrated); 2 for
a wrong option.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import timedelta
from typing import Any

from domain.ports import StorageUnavailable
from domain.reconcile import DEFAULT_LIMIT
from domain.reconcile import RECONCILE_AFTER
from domain.reconcile import ReconcileOutcome
from domain.reconcile import reconcile
from domain.reconcile import reconcile_order
from entrypoints.bootstrap import build_service
from entrypoints.observability import configure_logging
from entrypoints.settings import ConfigError
from entrypoints.settings import Settings

DEFAULT_MINUTES = RECONCILE_AFTER.total_seconds() / 60


def register(subparsers: Any) -> None:
    command = subparsers.add_parser(
        "reconcile",
        help="ask WeChat about unpaid orders; record payments, close the abandoned",
        description="Ask WeChat (orderquery) about each order still NOTPAY"
        " some minutes after it was placed: record it paid (with the"
        " notify's checks), or closed, or failed; close an unpaid one"
        " whose code has expired. One line per order on stdout. Run it"
        " every few minutes.",
    )
    command.add_argument(
        "--older-than",
        type=float,
        default=DEFAULT_MINUTES,
        metavar="MINUTES",
        help=f"only orders placed this many minutes ago or earlier"
        f" (default {DEFAULT_MINUTES:g}, as WeChat advises)",
    )
    command.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most this many orders, oldest first (default {DEFAULT_LIMIT})",
    )
    command.add_argument(
        "--out-trade-no",
        metavar="N",
        help="only this order, whatever its age",
    )
    command.set_defaults(func=run_reconcile)


def run_reconcile(args: argparse.Namespace) -> int:
    if args.older_than < 0:
        print("wxpay reconcile: --older-than must be 0 or more", file=sys.stderr)
        return 2
    if args.limit < 1:
        print("wxpay reconcile: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(f"wxpay reconcile: configuration error: {error}", file=sys.stderr)
        return 1
    level = os.environ.get("WXPAY_LOG_LEVEL", "INFO").upper()
    configure_logging(level, secrets=[settings.api_key.reveal()])
    # The schema check below would add Alembic's chatter to every run.
    logging.getLogger("alembic").setLevel(logging.WARNING)

    service = build_service(settings)
    problems = service.readiness()
    if problems:
        for problem in problems:
            print(f"wxpay reconcile: {problem}", file=sys.stderr)
        return 1
    try:
        if args.out_trade_no is not None:
            outcomes = [
                reconcile_order(
                    service.uow_factory(),
                    service.gateway,
                    service.merchant,
                    service.clock,
                    args.out_trade_no,
                )
            ]
        else:
            outcomes = reconcile(
                service.uow_factory(),
                service.gateway,
                service.merchant,
                service.clock,
                older_than=timedelta(minutes=args.older_than),
                limit=args.limit,
            )
    except StorageUnavailable as error:
        print(f"wxpay reconcile: {error}", file=sys.stderr)
        return 1

    for outcome in outcomes:
        print(outcome_line(outcome))
    return 0


def outcome_line(outcome: ReconcileOutcome) -> str:
    """``out_trade_no before -> after reason``; ``-`` for an unknown order."""
    before = outcome.before.value if outcome.before else "-"
    after = outcome.after.value if outcome.after else "-"
    return f"{outcome.out_trade_no} {before} -> {after} {outcome.reason}"
