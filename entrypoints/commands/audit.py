"""``wxpay audit``: read the audit trail of inbound callbacks and notifies.

Every message WeChat (or anyone claiming to be WeChat) posted to the
notify or callback URL is kept with the verdict it got; this command
prints them, newest first, one line each. Like ``wxpay db`` it needs
only ``WXPAY_DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from adapters.sqlalchemy_store import SqlAlchemyUnitOfWork
from domain.ports import InboundMessage
from entrypoints.commands.database import URL_VARIABLE
from entrypoints.commands.database import with_store

# TODO(audit): the trail only grows, one row per message, forged ones
# included; add `wxpay audit prune --older-than DAYS` before a busy shop
# has kept a year of it.
DEFAULT_LIMIT = 50
KINDS = ("notify", "callback")


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser(
        "audit",
        help="show the inbound notifies and callbacks, newest first",
        description=f"Print the audit trail in ${URL_VARIABLE}, newest first,"
        " one tab-separated line per message: received_at, kind, verdict,"
        " out_trade_no, remote address, request id (and with --body the"
        " raw body as a JSON string).",
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
        default=DEFAULT_LIMIT,
        help=f"at most this many lines (default {DEFAULT_LIMIT})",
    )
    audit.add_argument(
        "--body", action="store_true", help="add the raw body to each line"
    )
    audit.set_defaults(func=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    if args.limit < 1:
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
                    limit=args.limit,
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
