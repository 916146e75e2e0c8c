"""The simulator's WSGI app: WeChat's paths, the control API, the page."""

from __future__ import annotations

import falcon

from simulator.api import MerchantApi
from simulator.config import SimulatorConfig
from simulator.control import ClockResource
from simulator.control import FaultsResource
from simulator.control import LogResource
from simulator.control import MerchantsResource
from simulator.control import OrdersResource
from simulator.control import PageResource
from simulator.control import PayResource
from simulator.control import ResetResource
from simulator.control import ScanResource
from simulator.delivery import Deliverer
from simulator.delivery import DeliveryLog
from simulator.payer import Payer
from simulator.state import Clock
from simulator.state import FaultBook
from simulator.state import Ledger


class Simulator:
    """One simulated WeChat Pay: its state, its deliveries and its app.

    Args:
        config: merchants, time scale and the merchant's time budget.
        clock: the clock every rule reads; a fresh real clock by default.
    """

    def __init__(self, config: SimulatorConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.ledger = Ledger(list(config.merchants), self.clock)
        self.faults = FaultBook()
        self.log = DeliveryLog()
        self.deliverer = Deliverer(
            self.faults,
            self.log,
            time_scale=config.time_scale,
            timeout=config.callback_timeout,
        )
        self.payer = Payer(self.ledger, self.deliverer)
        self.app = self._build_app()

    def reset(self) -> None:
        """Forget orders, faults and the log; the clock returns to now."""
        self.ledger.reset()
        self.faults.clear()
        self.log.clear()
        self.clock.reset()

    def close(self) -> None:
        """Stop pending notify retries."""
        self.deliverer.close()

    def _build_app(self) -> falcon.App[falcon.Request, falcon.Response]:
        app = falcon.App()
        app.req_options.strip_url_path_trailing_slash = True
        merchant_api = MerchantApi(self.ledger, self.faults, self.deliverer)
        for path, resource in merchant_api.routes():
            app.add_route(path, resource)

        orders = OrdersResource(self.ledger)
        app.add_route("/control/scan", ScanResource(self.payer))
        app.add_route("/control/pay", PayResource(self.payer))
        app.add_route("/control/faults", FaultsResource(self.faults))
        app.add_route("/control/clock", ClockResource(self.clock))
        app.add_route("/control/orders", orders)
        app.add_route("/control/orders/{out_trade_no}", orders, suffix="one")
        app.add_route("/control/log", LogResource(self.log))
        app.add_route("/control/merchants", MerchantsResource(self.ledger))
        app.add_route("/control/reset", ResetResource(self.reset))

        page = PageResource(self.ledger, self.payer)
        app.add_route("/", page)
        app.add_route("/ui/pay", page, suffix="pay")
        app.add_route("/ui/scan", page, suffix="scan")
        return app


def create_app(
    config: SimulatorConfig, clock: Clock | None = None
) -> falcon.App[falcon.Request, falcon.Response]:
    """Build the simulator's WSGI app (its deliveries run until exit)."""
    return Simulator(config, clock).app
