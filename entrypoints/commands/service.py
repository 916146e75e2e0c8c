"""``wxpay serve``: run the checkout service under gunicorn.

The settings are checked first, so a wrong key or a missing variable
stops here with a clear message (exit 2) instead of in every worker.
Then this process *becomes* gunicorn (exec): same PID, so systemd and
``make run`` signal gunicorn's master directly.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from entrypoints.settings import ConfigError
from entrypoints.settings import Settings

CONFIG_VARIABLE = "WXPAY_GUNICORN_CONFIG"
METRICS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the checkout service (gunicorn)",
        description=(
            "Check the WXPAY_* settings, then run gunicorn with the"
            " project's gunicorn.conf.py. Without --host/--port the address"
            f" is WXPAY_BIND (default {DEFAULT_HOST}:{DEFAULT_PORT})."
        ),
    )
    serve.add_argument("--host", help=f"address to listen on ({DEFAULT_HOST})")
    serve.add_argument("--port", type=int, help=f"port ({DEFAULT_PORT})")
    serve.add_argument("--workers", type=int, help="worker processes (2)")
    serve.add_argument(
        "--config",
        help=f"gunicorn config file (default ${CONFIG_VARIABLE}, else the"
        " gunicorn.conf.py next to the package)",
    )
    serve.set_defaults(func=run_serve)


def find_config(given: str | None) -> Path | None:
    """The gunicorn config to use: given, from the environment, or ours.

    NOTE(serve): the file lives at the top of the repository, where an
    editable install (``pip install -e .``, as ``make`` does) finds it
    next to the ``entrypoints`` package; a wheel does not ship it, so an
    installed copy needs ``--config`` or ``WXPAY_GUNICORN_CONFIG``.
    """
    if given or os.environ.get(CONFIG_VARIABLE):
        path = Path(given or os.environ[CONFIG_VARIABLE])
        return path if path.is_file() else None
    beside = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
    return beside if beside.is_file() else None


def gunicorn_environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment gunicorn starts with; the config reads it."""
    environ = dict(os.environ)
    if args.host is not None or args.port is not None:
        host = args.host or DEFAULT_HOST
        port = DEFAULT_PORT if args.port is None else args.port
        bracketed = f"[{host}]" if ":" in host else host
        environ["WXPAY_BIND"] = f"{bracketed}:{port}"
    if args.workers is not None:
        environ["WXPAY_WORKERS"] = str(args.workers)
    environ[METRICS_VARIABLE] = _metrics_dir(environ.get(METRICS_VARIABLE))
    return environ


def _metrics_dir(given: str | None) -> str:
    # NOTE(metrics): each worker writes its samples into this folder and a
    # scrape sums them; samples left by an earlier run would be summed
    # too, so the folder's sample files are cleared at every start.
    if not given:
        return tempfile.mkdtemp(prefix="wxpay-metrics-")
    folder = Path(given)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    return str(folder)


def run_serve(args: argparse.Namespace) -> int:
    try:
        Settings.from_env()
    except ConfigError as error:
        print(f"wxpay serve: configuration error: {error}", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print("wxpay serve: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.port is not None and not 0 < args.port < 65536:
        print("wxpay serve: --port must be 1-65535", file=sys.stderr)
        return 2
    config = find_config(args.config)
    if config is None:
        print(
            "wxpay serve: no gunicorn config found; give --config PATH or"
            f" set {CONFIG_VARIABLE}",
            file=sys.stderr,
        )
        return 2

    environ = gunicorn_environment(args)
    argv = [sys.executable, "-m", "gunicorn", "--config", str(config)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, environ)  # noqa: S606 - our interpreter
    return 0  # pragma: no cover - execve does not return
