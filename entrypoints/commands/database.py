"""``wxpay db upgrade`` and ``wxpay db status``: the schema, by Alembic.

These commands need only the database URL, so they run before the rest of
the service is configured (a deploy step, a container's first start).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from adapters import alembic_migrations
from adapters.sqlalchemy_store import SqlAlchemyUnitOfWork
from adapters.sqlalchemy_store import create_engine_for
from adapters.sqlalchemy_store import describe
from domain.ports import DuplicateKey
from domain.ports import StorageUnavailable
from entrypoints.settings import DEFAULT_DATABASE_URL

URL_VARIABLE = "WXPAY_DATABASE_URL"


def database_url() -> str:
    """WXPAY_DATABASE_URL, or the default SQLite file."""
    # TODO(cli): also read database_url from the WXPAY_CONFIG file once
    # settings can be loaded without the merchant's secrets.
    return os.environ.get(URL_VARIABLE) or DEFAULT_DATABASE_URL


def register(subparsers: Any) -> None:
    database = subparsers.add_parser(
        "db",
        help="create or update the database schema",
        description=f"Manage the schema of ${URL_VARIABLE} (default"
        f" {DEFAULT_DATABASE_URL}).",
    )
    actions = database.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    upgrade = actions.add_parser(
        "upgrade",
        help="migrate to the newest schema; safe to repeat",
        description="Apply every missing migration. Two processes may run"
        " it at once: one waits for the other.",
    )
    upgrade.set_defaults(func=run_upgrade)

    status = actions.add_parser(
        "status",
        help="show the schema revision; exit 1 unless it is the newest",
    )
    status.set_defaults(func=run_status)


def run_upgrade(args: argparse.Namespace) -> int:
    engine = create_engine_for(database_url())
    try:
        alembic_migrations.upgrade(engine)
        revision = alembic_migrations.current_revision(engine)
    except StorageUnavailable as error:
        print(f"wxpay: cannot migrate: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"{describe(engine)} is at revision {revision}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    engine = create_engine_for(database_url())
    try:
        current = alembic_migrations.current_revision(engine)
    except StorageUnavailable as error:
        print(f"wxpay: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    head = alembic_migrations.head_revision()
    print(f"current {current or 'none'}")
    print(f"head {head}")
    if current != head:
        print("wxpay: run `wxpay db upgrade`", file=sys.stderr)
        return 1
    return 0


def with_store(work: Callable[[SqlAlchemyUnitOfWork], None]) -> int:
    """Run ``work`` on a unit of work over WXPAY_DATABASE_URL.

    Returns the exit status: 0, or 1 after saying on stderr why the
    database could not be used (unreachable, or not migrated to head).
    """
    engine = create_engine_for(database_url())
    try:
        if not alembic_migrations.is_at_head(engine):
            print(
                "wxpay: the database schema is not current;"
                " run `wxpay db upgrade` first",
                file=sys.stderr,
            )
            return 1
        work(SqlAlchemyUnitOfWork(engine))
    except (StorageUnavailable, DuplicateKey) as error:
        print(f"wxpay: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0
