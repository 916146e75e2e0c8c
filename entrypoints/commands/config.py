"""``wxpay config check``: find what would stop the service, before start.

Reads the settings as the service does (``WXPAY_*``, ``WXPAY_CONFIG``),
then checks what ``Settings`` alone cannot: that WeChat may post to the
notify URL, and that the database answers with the newest schema. Prints
one line per problem, each saying what is wrong and how to fix it; exit
0 when there is none, 1 otherwise. The API key is never printed.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Any
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from domain.ports import StorageUnavailable
from entrypoints.settings import ConfigError
from entrypoints.settings import Settings

# WeChat refuses a notify_url longer than this (unifiedorder's rule).
NOTIFY_URL_MAX = 256

# The database drivers this service installs (requirements.lock) and is
# tested with, by SQLAlchemy's (backend, driver) names; any other needs
# a package we do not ship. A URL without a driver gets SQLAlchemy's
# default for its backend: psycopg for postgresql://, which we ship, but
# mysqldb for mysql://, which we do not.
SUPPORTED_DRIVERS = frozenset(
    {
        ("postgresql", "psycopg"),
        ("mysql", "pymysql"),
        ("mariadb", "pymysql"),
        ("sqlite", "pysqlite"),
    }
)
EXAMPLES = {
    "postgresql": "postgresql+psycopg://user:password@host:5432/wxpay",
    "mysql": "mysql+pymysql://user:password@host:3306/wxpay",
    "mariadb": "mysql+pymysql://user:password@host:3306/wxpay",
}
SUPPORTED_SCHEMES = "postgresql+psycopg://, mysql+pymysql:// or sqlite:///"

HINTS = {
    "WXPAY_APPID": "set it to the appid bound to the merchant (wx...)",
    "WXPAY_MCH_ID": "set it to the merchant id (商户号)",
    "WXPAY_API_KEY": "set it to the 32-character API v2 key (API安全 > API密钥)",
}


def register(subparsers: Any) -> None:
    config = subparsers.add_parser(
        "config",
        help="check the service's settings",
        description="Check the WXPAY_* settings before starting the service.",
    )
    actions = config.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    check = actions.add_parser(
        "check",
        help="print every problem; exit 0 when there is none, 1 otherwise",
        description="Check the settings, the notify URL WeChat will be"
        " given, and that the database answers at the newest migration.",
    )
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        problems = [_with_hint(problem) for problem in error.problems]
    else:
        problems = url_problems(settings) + database_problems(settings)

    for problem in problems:
        print(f"problem: {problem}")
    if problems:
        print(f"wxpay config check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(
        f"ok: mch_id={settings.mch_id} appid={settings.appid}"
        f" sign_type={settings.sign_type.value} notify_url={settings.notify_url}"
    )
    return 0


def _with_hint(problem: str) -> str:
    for variable, hint in HINTS.items():
        if problem == f"{variable} is not set":
            return f"{problem}: {hint}"
    return problem


def url_problems(settings: Settings) -> list[str]:
    """What keeps WeChat from posting to us, or us from reaching WeChat.

    NOTE(config): WeChat posts notifies only to https URLs on public
    hosts. The strict reading is taken: plain http is a problem unless
    the host is loopback (a local run against the simulator), not a
    warning; a TLS-terminating proxy in front still gives WeChat https.
    """
    problems = []
    notify_url = settings.notify_url
    if not _secure_or_local(notify_url):
        parts = urlsplit(settings.public_url)
        https = urlunsplit(parts._replace(scheme="https"))
        problems.append(
            f"the notify URL {notify_url} is plain http on a non-loopback"
            f" host, and WeChat posts only to https: set WXPAY_PUBLIC_URL"
            f" to {https} (behind a TLS proxy)"
        )
    if len(notify_url) > NOTIFY_URL_MAX:
        problems.append(
            f"the notify URL has {len(notify_url)} characters; WeChat"
            f" accepts at most {NOTIFY_URL_MAX}: shorten WXPAY_PUBLIC_URL"
        )
    if not _secure_or_local(settings.api_base):
        # SECURITY(config): signed requests and answers (amounts, openids)
        # would cross the network in the clear.
        problems.append(
            f"WXPAY_API_BASE {settings.api_base} is plain http on a"
            " non-loopback host: use https://api.mch.weixin.qq.com"
        )
    return problems


def _secure_or_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def driver_problems(url: str) -> list[str]:
    """Whether the URL names a database driver this service ships."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        driver = parsed.get_driver_name()
    except ArgumentError:
        return [
            "WXPAY_DATABASE_URL is not a URL of a database SQLAlchemy"
            f" knows: give one like {SUPPORTED_SCHEMES}"
        ]
    if (backend, driver) in SUPPORTED_DRIVERS:
        return []
    # SECURITY(config): only the scheme is quoted; the rest of a server
    # URL may hold the database password.
    like = EXAMPLES.get(backend)
    advice = f"use {like}" if like else f"use {SUPPORTED_SCHEMES}"
    return [
        f"WXPAY_DATABASE_URL starts {parsed.drivername}://, which needs the"
        f" {driver} driver this service does not install: {advice}"
        f" (supported: {SUPPORTED_SCHEMES})"
    ]


def database_problems(settings: Settings) -> list[str]:
    """Whether the database answers and its schema is the newest."""
    # NOTE(config): imported here so that a settings problem is reported
    # without loading the database stack.
    from adapters import alembic_migrations
    from adapters.sqlalchemy_store import create_engine_for
    from adapters.sqlalchemy_store import ping

    unsupported = driver_problems(settings.database_url)
    if unsupported:
        return unsupported
    try:
        engine = create_engine_for(settings.database_url)
    except Exception as error:
        return [
            f"WXPAY_DATABASE_URL is not a usable database URL"
            f" ({type(error).__name__}): give one like {SUPPORTED_SCHEMES}"
        ]
    try:
        ping(engine)
        current = alembic_migrations.current_revision(engine)
    except StorageUnavailable as error:
        # The error names the database with its password hidden.
        return [
            f"the database does not answer: {error}; check WXPAY_DATABASE_URL"
            " and that the server runs and accepts this host"
        ]
    finally:
        engine.dispose()
    head = alembic_migrations.head_revision()
    if current != head:
        return [
            f"the database schema is at {current or 'no revision'}, the code"
            f" needs {head}: run `wxpay db upgrade`"
        ]
    return []
