"""Which client address the service believes, behind a reverse proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from entrypoints.wsgi_types import StartResponse
from entrypoints.wsgi_types import WSGIApp

DEFAULT_TRUSTED = ("127.0.0.1", "::1")


class TrustedProxyMiddleware:
    """Take the client address from ``X-Forwarded-For``, but only from a
    trusted proxy and only as many hops deep as there are proxies.

    SECURITY(proxy): this is the one owner of that decision. A request
    whose peer is not in ``trusted`` keeps its own ``REMOTE_ADDR`` and its
    ``X-Forwarded-For`` is ignored; a request through the proxy gets the
    address the last ``proxy_count`` trusted hops saw. The shipped nginx
    rules overwrite the header, so a client cannot prepend a forged one,
    and gunicorn's ``forwarded_allow_ips`` reads the same list.

    Args:
        app: the WSGI app to wrap.
        trusted: proxy addresses or networks (``"10.0.0.0/8"``).
        proxy_count: how many proxies stand in front, each appending one
            address to the header.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        trusted: Iterable[str] = DEFAULT_TRUSTED,
        proxy_count: int = 1,
    ) -> None:
        if proxy_count < 1:
            raise ValueError("proxy_count is at least 1")
        self.app = app
        self.proxy_count = proxy_count
        self.networks = [
            ipaddress.ip_network(item.strip(), strict=False)
            for item in trusted
            if item.strip()
        ]

    def __call__(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        peer = environ.get("REMOTE_ADDR", "")
        environ["wxpay.peer_addr"] = peer
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded and self._is_trusted(peer):
            hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
            if len(hops) >= self.proxy_count:
                client = hops[-self.proxy_count]
                if _is_address(client):
                    environ["REMOTE_ADDR"] = client
        return self.app(environ, start_response)

    def _is_trusted(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_trusted(text: str) -> list[str]:
    """Read ``WXPAY_TRUSTED_PROXIES``: comma-separated addresses."""
    return [item.strip() for item in text.split(",") if item.strip()]
