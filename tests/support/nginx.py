"""A real nginx in front of a service on loopback, using deploy/'s rules."""

import contextlib
import os
import shutil
from pathlib import Path

from tests.support.processes import REPO
from tests.support.processes import free_port
from tests.support.processes import running

PROXY_RULES = REPO / "deploy" / "nginx" / "wxpay-proxy.conf"
# The shipped rate-limit zones, included in the http block as the
# shipped site file does.
ZONES = REPO / "deploy" / "nginx" / "wxpay-zones.conf"


def nginx_binary():
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise RuntimeError("nginx is not installed; run scripts/ensure-system-deps")
    return found


def write_config(workdir, listen_host, listen_port, upstream_port):
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
    user = "user root root;" if os.geteuid() == 0 else ""
    config = f"""
{user}
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {workdir}/logs/access.log;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    include {ZONES};
    upstream wxpay_native {{
        server 127.0.0.1:{upstream_port};
        keepalive 4;
        keepalive_timeout 4s;
    }}
    server {{
        listen {listen_host}:{listen_port};
        include {PROXY_RULES};
        # The harness's own readiness probe: nginx answers it itself,
        # whether or not the service behind it is up yet.
        location = /__nginx_ready {{ return 204; }}
    }}
}}
"""
    path = workdir / "nginx.conf"
    path.write_text(config)
    return path


@contextlib.contextmanager
def nginx_in_front_of(upstream_port, workdir, listen_host="127.0.0.1"):
    """Yield nginx's base URL while it proxies to ``upstream_port``."""
    port = free_port(listen_host)
    config = write_config(Path(workdir), listen_host, port, upstream_port)
    url = f"http://{listen_host}:{port}"
    args = [nginx_binary(), "-c", str(config), "-p", str(workdir)]
    with running(
        args,
        ready_url=url + "/__nginx_ready",
        log_path=Path(workdir) / "logs" / "stdout.log",
    ):
        yield url
