"""``wxpay simulator ...``: run the simulator, and play the payer.

``serve`` runs it; every other sub-command talks to a running simulator's
control API at ``--url`` and prints its JSON answer. Exit status: 0 when
the answer says ok, 1 when it does not, 2 when the simulator cannot be
reached or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any
from urllib.parse import quote

import urllib3

from entrypoints.settings import ConfigError

DEFAULT_URL = "http://127.0.0.1:8001"
URL_VARIABLE = "WXPAY_SIMULATOR_URL"


def register(subparsers: Any) -> None:
    group = subparsers.add_parser(
        "simulator",
        help="a local WeChat Pay v2 simulator, and the payer's controls",
        description="Run the WeChat Pay simulator or act as the payer.",
    )
    commands = group.add_subparsers(dest="simulator_command", metavar="ACTION")
    commands.required = True

    serve = commands.add_parser("serve", help="run the simulator")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001, help="0 picks a free one")
    serve.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply the notify retry schedule (0.01: 15 s become 0.15 s)",
    )
    serve.add_argument(
        "--callback-timeout",
        type=float,
        default=5.0,
        help="seconds a merchant has to answer a callback or notify",
    )
    serve.add_argument(
        "--merchants",
        metavar="FILE",
        help="a TOML file of [[merchant]] tables (default: WXPAY_* variables)",
    )
    serve.set_defaults(func=run_serve)

    scan = commands.add_parser("scan", help="scan QR content as the payer")
    scan.add_argument("qr")
    scan.add_argument("--pay", action="store_true", help="and pay at once")
    scan.add_argument("--openid", default="")
    scan.add_argument("--coupon-fee", type=int, default=0)
    scan.add_argument("--twice", action="store_true", help="notify twice at once")
    _client(scan, run_scan)

    pay = commands.add_parser("pay", help="pay an order")
    pay.add_argument("out_trade_no")
    pay.add_argument("--mch-id", default="")
    pay.add_argument("--coupon-fee", type=int, default=0)
    pay.add_argument("--twice", action="store_true", help="notify twice at once")
    pay.add_argument("--fail", action="store_true", help="the bank refuses")
    _client(pay, run_pay)

    orders = commands.add_parser("orders", help="list orders, or show one")
    orders.add_argument("out_trade_no", nargs="?")
    _client(orders, run_orders)

    log = commands.add_parser("log", help="callbacks and notifies delivered")
    log.add_argument("--kind", choices=["callback", "notify", "refund_notify"])
    _client(log, run_log)

    fault = commands.add_parser("fault", help="inject a fault, or --clear them")
    fault.add_argument("api", nargs="?", help="unifiedorder, orderquery, ...")
    fault.add_argument(
        "kind", nargs="?", help="SYSTEMERROR, slow, http500 or drop_notify"
    )
    fault.add_argument("--count", type=int, default=1)
    fault.add_argument("--delay", type=float, default=0.0)
    fault.add_argument("--clear", action="store_true")
    _client(fault, run_fault)

    clock = commands.add_parser("clock", help="show or advance simulated time")
    clock.add_argument("--advance", type=float, metavar="SECONDS")
    _client(clock, run_clock)

    reset = commands.add_parser("reset", help="forget every order and fault")
    _client(reset, run_reset)


def _client(parser: argparse.ArgumentParser, func: Any) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_VARIABLE, DEFAULT_URL),
        help=f"the simulator (default ${URL_VARIABLE} or {DEFAULT_URL})",
    )
    parser.set_defaults(func=func)


def run_serve(args: argparse.Namespace) -> int:
    from simulator.app import Simulator
    from simulator.config import SimulatorConfig
    from simulator.config import merchant_from_env
    from simulator.config import merchants_from_file
    from simulator.server import Server

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        if args.merchants:
            merchants = merchants_from_file(args.merchants)
        else:
            merchants = (merchant_from_env(),)
        config = SimulatorConfig(
            merchants=merchants,
            time_scale=args.time_scale,
            callback_timeout=args.callback_timeout,
        )
    except ConfigError as error:
        print(f"wxpay simulator: {error}", file=sys.stderr)
        return 2

    simulator = Simulator(config)
    try:
        server = Server(simulator.app, args.host, args.port)
    except OSError as error:
        print(f"wxpay simulator: cannot listen: {error}", file=sys.stderr)
        return 2

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"wxpay simulator serving on {server.url}", flush=True)
    try:
        server.serve_forever()
    finally:
        simulator.close()
        server.close()
    print("wxpay simulator stopped", flush=True)
    return 0


def run_scan(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"qr": args.qr, "pay": args.pay, "duplicate": args.twice}
    if args.openid:
        body["openid"] = args.openid
    if args.coupon_fee:
        body["coupon_fee"] = args.coupon_fee
    return _call(args.url, "POST", "/control/scan", body)


def run_pay(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "out_trade_no": args.out_trade_no,
        "duplicate": args.twice,
        "fail": args.fail,
    }
    if args.mch_id:
        body["mch_id"] = args.mch_id
    if args.coupon_fee:
        body["coupon_fee"] = args.coupon_fee
    return _call(args.url, "POST", "/control/pay", body)


def run_orders(args: argparse.Namespace) -> int:
    path = "/control/orders"
    if args.out_trade_no:
        path += "/" + quote(args.out_trade_no, safe="")
    return _call(args.url, "GET", path)


def run_log(args: argparse.Namespace) -> int:
    path = "/control/log" + (f"?kind={args.kind}" if args.kind else "")
    return _call(args.url, "GET", path)


def run_fault(args: argparse.Namespace) -> int:
    if args.clear:
        return _call(args.url, "DELETE", "/control/faults")
    if not args.kind:
        if args.api:
            print("wxpay simulator fault: give API and KIND", file=sys.stderr)
            return 2
        return _call(args.url, "GET", "/control/faults")
    body = {
        "api": args.api,
        "kind": args.kind,
        "count": args.count,
        "delay": args.delay,
    }
    return _call(args.url, "POST", "/control/faults", body)


def run_clock(args: argparse.Namespace) -> int:
    if args.advance is None:
        return _call(args.url, "GET", "/control/clock")
    return _call(args.url, "POST", "/control/clock", {"advance": args.advance})


def run_reset(args: argparse.Namespace) -> int:
    return _call(args.url, "POST", "/control/reset", {})


def _call(base: str, method: str, path: str, body: Any = None) -> int:
    http = urllib3.PoolManager(retries=False)
    try:
        response = http.request(
            method,
            base.rstrip("/") + path,
            json=body,
            timeout=urllib3.Timeout(total=60),
        )
    except urllib3.exceptions.HTTPError as error:
        print(f"wxpay simulator: cannot reach {base}: {error}", file=sys.stderr)
        return 2
    try:
        data = json.loads(response.data or b"null")
    except ValueError:
        print(response.data.decode("utf-8", "replace"))
        return 1
    print(json.dumps(data, ensure_ascii=False, indent=2))
    if response.status >= 400:
        return 1
    if isinstance(data, dict) and data.get("ok") is False:
        return 1
    return 0
