"""The checkout app in-process: a seeded store, a service, signed bodies.

For tests that drive ``create_app`` (directly or through middleware)
without a database or WeChat: in-memory storage, ``FakeGateway`` and
``FixedClock``.
"""

from adapters.memory import InMemoryStore
from adapters.memory import InMemoryUnitOfWork
from domain.model import Order
from domain.model import Product
from domain.money import Fen
from entrypoints.bootstrap import Service
from tests.support import cases
from tests.support import rule
from tests.support.cases import merchant

NOTIFY_OK = (
    b"<xml><return_code><![CDATA[SUCCESS]]></return_code>"
    b"<return_msg><![CDATA[OK]]></return_msg></xml>"
)


def seed(uow, clock):
    """P001 and P002 on sale, P009 sold out, and the order cases.OTN."""
    uow.products.save(Product("P001", "Green tea", Fen(100)))
    uow.products.save(Product("P002", "Oolong", Fen(2590)))
    uow.products.save(Product("P009", "Sold out", Fen(50), available=False))
    uow.orders.add(
        Order(
            out_trade_no=cases.OTN,
            product_id="P001",
            body="Green tea",
            total_fee=Fen(100),
            created_at=clock.now(),
        )
    )
    uow.commit()


def seeded_store(clock):
    store = InMemoryStore()
    with InMemoryUnitOfWork(store) as uow:
        seed(uow, clock)
    return store


def service_over(store, gateway, clock, *, uow_factory=None, **options):
    return Service(
        merchant=options.pop("merchant", None) or merchant(),
        uow_factory=uow_factory or (lambda: InMemoryUnitOfWork(store)),
        gateway=gateway,
        clock=clock,
        **options,
    )


def signed_xml(fields, key=cases.KEY):
    return rule.to_xml(rule.with_sign(fields, key))


def stored_order(store, out_trade_no=cases.OTN):
    with InMemoryUnitOfWork(store) as uow:
        return uow.orders.get(out_trade_no)


def audit_trail(store, **filters):
    with InMemoryUnitOfWork(store) as uow:
        return uow.inbound.find(**filters)
