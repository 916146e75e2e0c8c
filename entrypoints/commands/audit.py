"""``wxpay audit``: read, or prune, the trail of inbound callbacks and notifies.

Every message WeChat (or anyone claiming to be WeChat) posted to the
notify or callback URL is kept with the verdict it got; ``wxpay audit``
(or ``wxpay audit list``) prints them, newest first, one line each, and
``wxpay audit prune --older-than DAYS`` deletes the old ones. Like
``wxpay db`` it needs only ``WXPAY_DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import Any

from adapters.clock import SystemClock
from adapters.sqlalchemy_store import SqlAlchemyUnitOfWork
from domain.ports import InboundMessage
from entrypoints.commands.database import URL_VARIABLE
from entrypoints.commands.database import with_store

DEFAULT_LIMIT = 50
KINDS = ("notify", "callback")
# NOTE(audit): the action is an optional positional rather than a
# subcommand, so `wxpay audit --kind notify` keeps meaning "list".
LIST = "list"
PRUNE = "prune"
LIST_OPTIONS = ("out_trade_no", "verdict", "kind", "limit", "body")


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser(
        "audit",
        help="show the inbound notifies and callbacks, or prune old ones",
        description=f"Print the audit trail in ${URL_VARIABLE}, newest first,"
        " one tab-separated line per message: received_at, kind, verdict,"
        " out_trade_no, remote address, request id (and with --body the"
        " raw body as a JSON string). `wxpay audit prune --older-than DAYS`"
        " deletes the messages received more than DAYS days ago.",
    )
    audit.add_argument(
        "action",
        nargs="?",
        choices=(LIST, PRUNE),
        default=LIST,
        help=f"{LIST} (the default) or {PRUNE}",
    )
    audit.add_argument(
        "--older-than",
        type=int,
        metavar="DAYS",
        help=f"with {PRUNE}: delete messages received more than DAYS days ago",
    )
    audit.add_argument("--out-trade-no", help="only this order's messages")
    audit.add_argument(
        "--verdict",
        help="only this verdict (accepted, bad_sign, prepay, mismatch, ...)",
    )
    audit.add_argument("--kind", choices=KINDS, help="only notifies or callbacks")
    audit.add_argument(
        "--limit",
        type=int,
        help=f"at most this many lines (default {DEFAULT_LIMIT})",
    )
    audit.add_argument(
        "--body", action="store_true", help="add the raw body to each line"
    )
    audit.set_defaults(func=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    if args.action == PRUNE:
        return run_prune(args)
    if args.older_than is not None:
        print(f"wxpay audit: --older-than goes with `{PRUNE}`", file=sys.stderr)
        return 2
    limit = DEFAULT_LIMIT if args.limit is None else args.limit
    if limit < 1:
        print("wxpay audit: --limit must be at least 1", file=sys.stderr)
        return 2
    found: list[InboundMessage] = []

    def read(uow: SqlAlchemyUnitOfWork) -> None:
        with uow:
            found.extend(
                uow.inbound.find(
                    out_trade_no=args.out_trade_no,
                    verdict=args.verdict,
                    kind=args.kind,
                    limit=limit,
                )
            )

    status = with_store(read)
    if status != 0:
        return status
    if not found:
        print("wxpay audit: no message matches", file=sys.stderr)
    for message in found:
        print(audit_line(message, body=args.body))
    return 0


def run_prune(args: argparse.Namespace) -> int:
    """Delete the messages older than ``--older-than`` days; say how many."""
    if args.older_than is None or args.older_than < 1:
        print(
            f"wxpay audit {PRUNE}: --older-than DAYS (at least 1) is required",
            file=sys.stderr,
        )
        return 2
    if any(getattr(args, name) not in (None, False) for name in LIST_OPTIONS):
        print(
            f"wxpay audit {PRUNE}: takes only --older-than; the filters are"
            " for listing",
            file=sys.stderr,
        )
        return 2
    before = SystemClock().now() - timedelta(days=args.older_than)
    removed: list[int] = []

    def prune(uow: SqlAlchemyUnitOfWork) -> None:
        with uow:
            removed.append(uow.inbound.prune(before))
            uow.commit()

    status = with_store(prune)
    if status != 0:
        return status
    print(f"pruned {removed[0]} messages received before {before.isoformat()}")
    return 0


def audit_line(message: InboundMessage, *, body: bool = False) -> str:
    """One message as a tab-separated line; ``-`` for an empty field.

    SECURITY(audit): every field but the time may hold what a stranger
    sent; control characters (a terminal's escape sequences, tabs,
    newlines) are shown escaped, never written as they are.
    """
    columns = [
        message.received_at.isoformat(),
        _shown(message.kind),
        _shown(message.verdict),
        _shown(message.out_trade_no),
        _shown(message.remote_addr),
        _shown(message.request_id),
    ]
    if body:
        # json.dumps escapes C0 controls and quotes; _escape the rest
        # (C1 controls such as U+009B, line and paragraph separators).
        columns.append(_escape(json.dumps(message.body, ensure_ascii=False)))
    return "\t".join(columns)


def _shown(text: str) -> str:
    return _escape(text) if text else "-"


def _escape(text: str) -> str:
    return "".join(
        char if char.isprintable() else f"\\u{ord(char):04x}" for char in text
    )
