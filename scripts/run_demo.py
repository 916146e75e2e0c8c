"""``make run``: the checkout service and the WeChat simulator, together.

Sets a demo merchant up (every id and key is fake; a variable already set
in the environment wins), migrates the database, loads a few products,
then starts ``wxpay simulator serve`` and ``wxpay serve`` as child
processes and waits. Ctrl-C or SIGTERM stops both, each by its PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WXPAY = str(Path(sys.executable).with_name("wxpay"))
# Where the two listen; set these to move them (e.g. when 8000 is taken).
SERVICE_PORT = int(os.environ.get("WXPAY_DEMO_PORT", "8000"))
SIMULATOR_PORT = int(os.environ.get("WXPAY_DEMO_SIMULATOR_PORT", "8001"))

DEMO_ENVIRONMENT = {
    "WXPAY_APPID": "wx00000000demo0001",
    "WXPAY_MCH_ID": "1900000001",
    "WXPAY_API_KEY": "DEMOKEY0DEMOKEY0DEMOKEY0DEMOKEY0",
    "WXPAY_API_BASE": f"http://127.0.0.1:{SIMULATOR_PORT}",
    "WXPAY_PUBLIC_URL": f"http://127.0.0.1:{SERVICE_PORT}",
    "WXPAY_CALLBACK_URL": f"http://127.0.0.1:{SERVICE_PORT}/wechatpay/callback",
    "WXPAY_DATABASE_URL": "sqlite:///var/wxpay.sqlite3",
}
DEMO_PRODUCTS = (
    ("P001", "Jasmine tea 茉莉花茶", "1"),
    ("P002", "Notebook", "1250"),
    ("P003", "Coffee beans, 250 g", "6800"),
)
STOP_WAIT_S = 15


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers do: connections of a run that just ended, left in
        # TIME_WAIT, must not count as "in use"; a listener still does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wxpay(*args: str) -> int:
    return subprocess.call([WXPAY, *args], cwd=REPO)


def start(*args: str) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C reaches this script only, which then
    # stops each child in order instead of all at once.
    return subprocess.Popen([WXPAY, *args], cwd=REPO, start_new_session=True)


def stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"run: pid {child.pid} did not stop; killing it")
            os.kill(child.pid, signal.SIGKILL)
            child.wait()


class Stop(Exception):
    pass


def on_signal(signum: int, frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def main() -> int:
    for name, value in DEMO_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    (REPO / "var").mkdir(exist_ok=True)

    busy = [p for p in (SERVICE_PORT, SIMULATOR_PORT) if not port_is_free(p)]
    if busy:
        ports = " and ".join(str(port) for port in busy)
        print(
            f"run: 127.0.0.1 port {ports} already in use; stop what listens"
            " there (an earlier `make run`?), or choose others with"
            " WXPAY_DEMO_PORT and WXPAY_DEMO_SIMULATOR_PORT.",
            file=sys.stderr,
        )
        return 1

    if wxpay("db", "upgrade") != 0:
        print("run: `wxpay db upgrade` failed; see above.", file=sys.stderr)
        return 1
    for product_id, name, price in DEMO_PRODUCTS:
        if wxpay("product", "add", product_id, name, price) != 0:
            print(f"run: could not add product {product_id}; going on.")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children: list[subprocess.Popen[bytes]] = []
    try:
        children.append(start("simulator", "serve", "--port", str(SIMULATOR_PORT)))
        children.append(start("serve", "--port", str(SERVICE_PORT)))
        print(
            "\n"
            f"  shop:      http://127.0.0.1:{SERVICE_PORT}/\n"
            f"  simulator: http://127.0.0.1:{SIMULATOR_PORT}/"
            "  (paste a code's content there; one click pays)\n"
            "  Ctrl-C stops both.\n",
            flush=True,
        )
        while True:
            for child in children:
                if child.poll() is not None:
                    print(
                        f"run: {' '.join(map(str, child.args[1:]))} exited"
                        f" with {child.returncode}; stopping.",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.5)
    except Stop as reason:
        print(f"\nrun: {reason}; stopping.")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop(children)


if __name__ == "__main__":
    sys.exit(main())
