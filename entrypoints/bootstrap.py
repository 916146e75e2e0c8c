"""Wire the service: the merchant, the store, the gateway and the clock.

``create_app`` takes a :class:`Service`, so tests hand it in-memory
storage and a fake gateway; :func:`build_service` is the one place that
picks the real adapters from the settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

from adapters.xml_codec import XmlLimits
from domain.merchant import Merchant
from domain.ports import Clock
from domain.ports import PaymentGateway
from domain.ports import UnitOfWork
from entrypoints.settings import Settings


@dataclass(frozen=True)
class Service:
    """Everything a request needs, built once per process.

    ``uow_factory`` makes a fresh unit of work; a unit of work is not
    thread-safe, so every request calls it instead of sharing one.
    """

    merchant: Merchant
    uow_factory: Callable[[], UnitOfWork]
    gateway: PaymentGateway
    clock: Clock
    xml_limits: XmlLimits = field(default_factory=XmlLimits)


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
    )
