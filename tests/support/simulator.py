"""Start ``wxpay simulator serve`` as a real process, for e2e tests.

    with running_simulator(env, time_scale=0.01) as simulator:
        requests.post(simulator.url + "/pay/unifiedorder", ...)
        simulator.control("POST", "/control/scan", {"qr": code_url, "pay": True})

The process listens on a free loopback port (``--port 0``), its output goes
to files (``simulator.output()`` shows them when a test fails), and it is
stopped by PID with SIGTERM, then SIGKILL if it does not exit.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import urllib3

from tests.support import cases

READY = re.compile(r"serving on (http://\S+)")

FAKE_MERCHANT_ENV = {
    "WXPAY_APPID": cases.APPID,
    "WXPAY_MCH_ID": cases.MCH_ID,
    "WXPAY_API_KEY": cases.KEY,
    "WXPAY_SIGN_TYPE": "MD5",
}


class RunningSimulator:
    """A ``wxpay simulator serve`` process and its URL."""

    def __init__(self, process, url, folder):
        self.process = process
        self.url = url
        self.folder = folder
        self._http = urllib3.PoolManager(retries=False)

    @property
    def pid(self):
        return self.process.pid

    def control(self, method, path, body=None):
        """Call the control API; return the decoded JSON answer."""
        response = self._http.request(
            method, self.url + path, json=body, timeout=urllib3.Timeout(total=30)
        )
        if response.status >= 400:
            raise AssertionError(
                f"{method} {path}: {response.status} {response.data!r}"
            )
        return json.loads(response.data)

    def output(self):
        parts = []
        for name in ("stdout", "stderr"):
            text = (Path(self.folder) / name).read_text(errors="replace")
            parts.append(f"--- {name} ---\n{text}")
        return "\n".join(parts)

    def stop(self, timeout=5.0):
        """SIGTERM by PID, wait, SIGKILL if it is still there."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        return self.process.returncode


def start_simulator(
    env=None,
    *,
    time_scale=0.01,
    callback_timeout=2.0,
    merchants_file=None,
    ready_timeout=20.0,
    extra_args=(),
):
    """Start the simulator; return once it answers, or raise with its output.

    Args:
        env: WXPAY_* variables (default: the fake merchant of cases.py);
            other WXPAY_* variables of this process are not passed on.
    """
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WXPAY_")}
    environ.update(FAKE_MERCHANT_ENV if env is None else env)
    folder = tempfile.mkdtemp(prefix="wxpay-simulator-")
    command = [
        sys.executable,
        "-m",
        "entrypoints.cli",
        "simulator",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--time-scale",
        str(time_scale),
        "--callback-timeout",
        str(callback_timeout),
        *(["--merchants", str(merchants_file)] if merchants_file else []),
        *extra_args,
    ]
    root = Path(__file__).resolve().parents[2]
    with (
        open(Path(folder) / "stdout", "wb") as out,
        open(Path(folder) / "stderr", "wb") as err,
    ):
        process = subprocess.Popen(
            command, cwd=root, env=environ, stdout=out, stderr=err
        )

    deadline = time.monotonic() + ready_timeout
    url = None
    while time.monotonic() < deadline:
        match = READY.search((Path(folder) / "stdout").read_text(errors="replace"))
        if match:
            url = match.group(1)
            break
        if process.poll() is not None:
            break
        time.sleep(0.05)
    simulator = RunningSimulator(process, url, folder)
    if url is None:
        simulator.stop()
        raise RuntimeError(f"the simulator did not start:\n{simulator.output()}")
    simulator.control("GET", "/control/merchants")
    return simulator


@contextlib.contextmanager
def running_simulator(env=None, **options):
    """``start_simulator`` as a context manager that always stops it."""
    simulator = start_simulator(env, **options)
    try:
        yield simulator
    finally:
        simulator.stop()
