"""gunicorn's settings for wxpay-native, read by ``wxpay serve``.

Every setting says what it means, its unit, and why it has this value.
Operators change the few that vary between machines through ``WXPAY_*``
variables; everything else is a decision, not a knob. gunicorn reads this
file with ``--config``; ``wxpay serve`` passes it.
"""

import ipaddress
import os

from adapters.prometheus_metrics import worker_exited

# ---------------------------------------------------------------------------
# The application
# ---------------------------------------------------------------------------

# The WSGI callable; importing it reads WXPAY_* and wires the real adapters.
wsgi_app = "entrypoints.wsgi:application"

# Load the app in each worker after the fork, not once in the master.
# A loaded app holds a database pool and an HTTPS pool to WeChat; sockets
# copied across a fork get shared by processes that each think they own
# them. Loading per worker also lets HUP reload code and settings.
preload_app = False

# ---------------------------------------------------------------------------
# Where to listen
# ---------------------------------------------------------------------------

# host:port (or unix:PATH). Loopback, always: gunicorn is never exposed
# directly; nginx (deploy/nginx) alone faces the internet.
#
# SECURITY(proxy): a gthread worker gives each connection a thread once
# its first bytes arrive, and that thread then blocks until the client
# has sent every header and the whole body, however slowly it trickles
# them. gunicorn 27 has no setting that bounds that time: `timeout`
# below is the worker's heartbeat, which its main thread keeps beating
# while a thread waits. So 8 slow clients (2 workers x 4 threads) reaching
# gunicorn directly stop every notify for as long as they like (measured:
# 8 connections held it 60 s). nginx reads a request's whole body before
# it opens an upstream connection (proxy_request_buffering, kept on in
# deploy/nginx) and gives up on a client idle for 10 s, so gunicorn only
# ever reads complete requests at loopback speed. on_starting (below)
# warns if this is set to anything but loopback.
bind = [os.environ.get("WXPAY_BIND", "127.0.0.1:8000")]

# Connections the kernel queues before gunicorn accepts them. A burst of
# notifies (WeChat sends from several servers at once) fits easily.
backlog = 256

# ---------------------------------------------------------------------------
# Workers and threads
# ---------------------------------------------------------------------------

# Worker processes. Each runs the whole app; two survive one crashing and
# use two cores. Raise it with the machine's cores (about 2 per core).
workers = int(os.environ.get("WXPAY_WORKERS", "2"))

# Threads per worker. Requests mostly wait on the database or on WeChat
# (up to its ~4.5 s deadline in the mode-1 callback), not on the CPU, so
# threads keep a worker answering while one request waits.
worker_class = "gthread"
threads = int(os.environ.get("WXPAY_THREADS", "4"))

# Recycle a worker after this many requests (plus up to the jitter), so a
# slow leak cannot grow forever; the jitter keeps workers from all
# restarting at the same moment.
max_requests = 5000
max_requests_jitter = 500

# ---------------------------------------------------------------------------
# Timeouts (seconds)
# ---------------------------------------------------------------------------

# A worker silent for this long is killed and replaced. The slowest path
# (scan callback: storage plus a WeChat call with a 4.5 s deadline)
# finishes in well under 10 s; 30 s only catches a truly stuck worker.
timeout = 30

# On stop or reload, workers get this long to finish requests in flight,
# so a notify being recorded is not cut off halfway. Matches systemd's
# TimeoutStopSec (30 s) with room to spare.
graceful_timeout = 20

# How long an idle keep-alive connection stays open. nginx reuses its
# upstream connections; a few seconds saves reconnects without hoarding
# threads. nginx's upstream keepalive_timeout (deploy/nginx, 4 s) stays
# below this, so nginx, not gunicorn, closes an idle connection.
keepalive = 5

# ---------------------------------------------------------------------------
# Request limits (bytes / count)
# ---------------------------------------------------------------------------

# Longest request line (method, path, version). Our paths are short; a
# longer line is a probe, not a customer. (gunicorn's default is 4094.)
limit_request_line = 2048

# Most header fields in one request, and the size of any one of them.
# Browsers and WeChat send a dozen small headers.
limit_request_fields = 50
limit_request_field_size = 8190

# NOTE(limits): bodies are bounded by the app itself: WeChat messages at
# 64 KiB (adapters/xml_codec.XmlLimits), JSON at 4 KiB, and by nginx's
# client_max_body_size in front.

# ---------------------------------------------------------------------------
# Behind a proxy
# ---------------------------------------------------------------------------

# SECURITY(proxy): the peers whose X-Forwarded-Proto gunicorn believes
# (the request's scheme). gunicorn never takes the client address from
# X-Forwarded-For: the app's TrustedProxyMiddleware does, and it reads
# the same WXPAY_TRUSTED_PROXIES, so there is one owner of the decision;
# deploy/nginx must agree (it overwrites X-Forwarded-For). Never "*":
# then any client could claim any address and scheme.
forwarded_allow_ips = os.environ.get("WXPAY_TRUSTED_PROXIES", "127.0.0.1")

# ---------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------

# Access log to stdout ("-"), error log (gunicorn's own lines) to stderr.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("WXPAY_LOG_LEVEL", "info").lower()

# One key=value line per request. request_id is the X-Request-ID the app
# answered with: the proxy's id when it sent a sane one, else a fresh
# one, and the same id as on the app's own log lines. duration_us is
# microseconds. No query string: nothing we serve needs one logged.
access_log_format = (
    "remote=%(h)s request_id=%({x-request-id}o)s method=%(m)s"
    ' path="%(U)s" status=%(s)s bytes=%(B)s duration_us=%(D)s'
    ' agent="%(a)s"'
)

# Our subclass of gunicorn's logger writes control characters in logged
# values (a "%0a" in a path) as escapes, so no request can forge a line.
logger_class = "entrypoints.gunicorn_logging.EscapingLogger"

# Name the processes in ps/top: "gunicorn: worker [wxpay-native]".
proc_name = "wxpay-native"

# ---------------------------------------------------------------------------
# Control
# ---------------------------------------------------------------------------

# gunicorn's runtime control socket (for gunicornc) lives at one fixed
# path per user, so a second instance on the same host would fight over
# it. We steer gunicorn with signals (systemd's reload sends HUP), so
# the socket is off.
control_socket_disable = True

# ---------------------------------------------------------------------------
# Hooks
# ---------------------------------------------------------------------------


def on_starting(server):
    """Warn, once, at start if gunicorn listens beyond this host."""
    for address in server.cfg.bind:
        if not faces_only_this_host(address):
            server.log.warning(
                "SECURITY gunicorn binds %s, not loopback: slow clients"
                " reaching it directly can hold every thread; bind"
                " 127.0.0.1 and let nginx (deploy/nginx) face the network",
                address,
            )


def child_exit(server, worker):
    """A worker died: drop its live metrics (multiprocess mode only)."""
    worker_exited(worker.pid)


def faces_only_this_host(address):
    """True for a unix socket, an inherited fd, or a loopback address."""
    if address.startswith(("unix:", "fd://")):
        return True
    if address.startswith("["):
        host = address[1 : address.find("]")]
    else:
        host = address.rsplit(":", 1)[0] if ":" in address else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
