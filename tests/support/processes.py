"""Start and stop the real processes end-to-end tests talk to.

Every process is started here, waited for with a deadline, and stopped by
its own PID; nothing else on the machine is touched.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port(host="127.0.0.1"):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_http(url, deadline=20.0, process=None):
    """Poll ``url`` until it answers 2xx.

    Only success counts: another server that happens to hold the port
    (and answers 404) must not pass for the one we started.
    """
    until = time.monotonic() + deadline
    last = None
    while time.monotonic() < until:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError as error:  # HTTPError included: not ready yet
            last = error
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {deadline}s: {last}")


def stop(process, timeout=10.0):
    """Stop a process we started: SIGTERM, then SIGKILL after ``timeout``."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@contextlib.contextmanager
def running(args, *, env=None, ready_url=None, log_path=None, deadline=30.0):
    """Run ``args`` for the duration of the block, logging to a file."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        if ready_url:
            try:
                wait_for_http(ready_url, deadline, process)
            except Exception:
                if log_path:
                    sys.stderr.write(Path(log_path).read_text()[-4000:])
                raise
        yield process
    finally:
        stop(process)
        if log_path:
            log.close()
