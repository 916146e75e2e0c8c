"""The checkout service as a real gunicorn process, for end-to-end tests."""

import contextlib
import subprocess
from pathlib import Path

from tests.support import cases
from tests.support.processes import BIN
from tests.support.processes import REPO
from tests.support.processes import free_port
from tests.support.processes import running

WXPAY = str(BIN / "wxpay")
PRODUCTS = (("P001", "Green tea", 100), ("P002", "Oolong", 2590))


def merchant_env(api_base, public_url, database_url, sign_type="MD5"):
    """One environment that configures both the service and the simulator."""
    return {
        "WXPAY_APPID": cases.APPID,
        "WXPAY_MCH_ID": cases.MCH_ID,
        "WXPAY_API_KEY": cases.KEY,
        "WXPAY_SIGN_TYPE": sign_type,
        "WXPAY_API_BASE": api_base,
        "WXPAY_PUBLIC_URL": public_url,
        "WXPAY_CALLBACK_URL": public_url + "/wechatpay/callback",
        "WXPAY_DATABASE_URL": database_url,
    }


def wxpay(*args, env):
    result = subprocess.run(
        [WXPAY, *args],
        env=env,
        capture_output=True,
        cwd=REPO,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"wxpay {' '.join(args)} failed: {result.stderr.decode()[-2000:]}"
        )
    return result.stdout.decode()


def prepare_database(env, products=PRODUCTS):
    wxpay("db", "upgrade", env=env)
    for product_id, name, price in products:
        wxpay("product", "add", product_id, name, str(price), env=env)


@contextlib.contextmanager
def checkout_service(env, log_dir, *, port=None, workers=2, host="127.0.0.1"):
    """Run ``wxpay serve`` (gunicorn) and yield its base URL."""
    import os

    port = port or free_port(host)
    url = f"http://{host}:{port}"
    with running(
        [
            WXPAY,
            "serve",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env={**os.environ, **env},
        ready_url=url + "/healthz",
        log_path=Path(log_dir) / f"service-{port}.log",
        deadline=40,
    ) as process:
        yield url, process
