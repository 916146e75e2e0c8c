"""Wire the service: the merchant, the store, the gateway and the clock.

``create_app`` takes a :class:`Service`, so tests hand it in-memory
storage and a fake gateway; :func:`build_service` is the one place that
picks the real adapters from the settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING

from adapters.xml_codec import XmlLimits
from domain.merchant import Merchant
from domain.ports import Clock
from domain.ports import PaymentGateway
from domain.ports import StorageUnavailable
from domain.ports import UnitOfWork
from entrypoints.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)


def always_ready() -> list[str]:
    """The readiness probe of in-memory storage: nothing can be down."""
    return []


@dataclass(frozen=True)
class Service:
    """Everything a request needs, built once per process.

    ``uow_factory`` makes a fresh unit of work; a unit of work is not
    thread-safe, so every request calls it instead of sharing one.
    ``readiness`` returns the problems that keep the service from taking
    traffic (``GET /readyz``): an empty list when it is ready.
    """

    merchant: Merchant
    uow_factory: Callable[[], UnitOfWork]
    gateway: PaymentGateway
    clock: Clock
    xml_limits: XmlLimits = field(default_factory=XmlLimits)
    readiness: Callable[[], list[str]] = always_ready


def merchant_from(settings: Settings) -> Merchant:
    """The merchant identity the settings describe."""
    return Merchant(
        appid=settings.appid,
        mch_id=settings.mch_id,
        api_key=settings.api_key,
        sign_type=settings.sign_type,
        notify_url=settings.notify_url,
    )


def build_service(settings: Settings) -> Service:
    """Build the service over SQLAlchemy storage and WeChat over urllib3."""
    # NOTE(bootstrap): imported here, not at the top, so that the app and
    # its tests load without the database and HTTP client stacks.
    import adapters.sqlalchemy_store as sql
    import adapters.wechat_http as wechat
    from adapters.clock import SystemClock

    merchant = merchant_from(settings)
    engine = sql.create_engine_for(settings.database_url)

    def new_unit_of_work() -> UnitOfWork:
        return sql.SqlAlchemyUnitOfWork(engine)

    return Service(
        merchant=merchant,
        uow_factory=new_unit_of_work,
        gateway=wechat.Urllib3WeChatGateway(merchant, settings.api_base),
        clock=SystemClock(),
        readiness=database_readiness(engine),
    )


def database_readiness(engine: Engine) -> Callable[[], list[str]]:
    """A readiness probe: the database answers and its schema is current.

    Each problem names its check (``database: ...``, ``migrations:
    ...``) and says what to do; the full error goes to the log.

    NOTE(ops): the newest revision is read from the migration files once,
    here; each probe then costs one connection and two small queries.
    """
    import adapters.alembic_migrations as migrations
    import adapters.sqlalchemy_store as sql

    head = migrations.head_revision()
    where = sql.describe(engine)

    def problems() -> list[str]:
        try:
            sql.ping(engine)
            current = migrations.current_revision(engine)
        except StorageUnavailable as error:
            log.warning("not ready: database=%s reason=%s", where, error)
            return ["database: does not answer; check WXPAY_DATABASE_URL"]
        if current != head:
            log.warning(
                "not ready: database=%s revision=%s head=%s",
                where,
                current or "none",
                head,
            )
            return [
                f"migrations: the schema is at {current or 'no revision'},"
                f" the code needs {head}; run `wxpay db upgrade`"
            ]
        return []

    return problems
