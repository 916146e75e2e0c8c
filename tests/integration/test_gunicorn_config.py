"""gunicorn.conf.py loads in gunicorn and says what the service needs."""

import runpy
from pathlib import Path

import pytest
from gunicorn.config import Config

CONFIG = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def load(monkeypatch, **environ):
    for name in (
        "WXPAY_BIND",
        "WXPAY_WORKERS",
        "WXPAY_THREADS",
        "WXPAY_TRUSTED_PROXIES",
        "WXPAY_LOG_LEVEL",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONFIG))


def as_gunicorn_reads_it(settings):
    config = Config()
    for name, value in settings.items():
        if name in config.settings:
            config.set(name, value)
    return config


def test_every_setting_is_one_gunicorn_knows_and_accepts(monkeypatch):
    settings = load(monkeypatch)

    config = as_gunicorn_reads_it(settings)

    assert config.worker_class_str == "gthread"
    assert config.wsgi_app == "entrypoints.wsgi:application"
    assert config.preload_app is False


def test_the_defaults_are_loopback_and_two_workers(monkeypatch):
    settings = load(monkeypatch)

    assert settings["bind"] == ["127.0.0.1:8000"]
    assert settings["workers"] == 2
    assert settings["threads"] >= 2
    assert settings["forwarded_allow_ips"] == "127.0.0.1"
    assert settings["accesslog"] == "-"


def test_the_environment_sets_address_workers_and_trusted_proxies(monkeypatch):
    settings = load(
        monkeypatch,
        WXPAY_BIND="0.0.0.0:9000",
        WXPAY_WORKERS="5",
        WXPAY_TRUSTED_PROXIES="10.0.0.2",
    )

    config = as_gunicorn_reads_it(settings)

    assert config.bind == ["0.0.0.0:9000"]
    assert config.workers == 5
    assert config.forwarded_allow_ips == ["10.0.0.2"]


def test_timeouts_leave_room_for_the_slowest_request(monkeypatch):
    settings = load(monkeypatch)

    # The callback may wait ~4.5 s on WeChat; a worker must not be killed
    # for that, and a graceful stop must let it finish.
    assert settings["timeout"] >= 10
    assert 5 <= settings["graceful_timeout"] < 30
    assert 1 <= settings["keepalive"] <= 10
    assert settings["limit_request_line"] <= 4094
    assert settings["limit_request_field_size"] <= 8190


@pytest.mark.parametrize("atom", ["request_id=%({x-request-id}o)s", "status=%(s)s"])
def test_the_access_log_is_key_value_with_the_request_id(monkeypatch, atom):
    settings = load(monkeypatch)

    assert atom in settings["access_log_format"]


def test_each_setting_is_explained_by_a_comment_above_it():
    paragraphs = CONFIG.read_text().split("\n\n")

    settings = [
        paragraph
        for paragraph in paragraphs
        if any(line[:1].isalpha() and " = " in line for line in paragraph.split("\n"))
    ]
    unexplained = [p for p in settings if not p.strip().startswith("#")]
    assert len(settings) >= 15
    assert unexplained == []


class StartingServer:
    """What on_starting reads of gunicorn's arbiter: its binds and log."""

    def __init__(self, settings):
        self.cfg = as_gunicorn_reads_it(settings)
        self.warnings = []

    @property
    def log(self):
        return self

    def warning(self, message, *args):
        self.warnings.append(message % args)


@pytest.mark.parametrize(
    "bind",
    ["127.0.0.1:8000", "[::1]:8000", "localhost:8000", "unix:/run/wxpay.sock"],
)
def test_a_loopback_bind_starts_without_a_warning(monkeypatch, bind):
    settings = load(monkeypatch, WXPAY_BIND=bind)
    server = StartingServer(settings)

    settings["on_starting"](server)

    assert server.warnings == []


@pytest.mark.parametrize(
    "bind", ["0.0.0.0:8000", "[::]:8000", "203.0.113.7:80", "shop.example:8000"]
)
def test_a_bind_beyond_loopback_warns_that_gunicorn_needs_nginx(monkeypatch, bind):
    settings = load(monkeypatch, WXPAY_BIND=bind)
    server = StartingServer(settings)

    settings["on_starting"](server)

    (warning,) = server.warnings
    assert bind in warning
    assert "not loopback" in warning and "nginx" in warning
