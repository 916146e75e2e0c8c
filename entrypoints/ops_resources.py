"""What operators and their tools ask the service: health and metrics."""

from __future__ import annotations

import falcon

from adapters.prometheus_metrics import exposition


class HealthResource:
    """``GET /healthz``: the process answers; nothing else is checked.

    NOTE(ops): a liveness probe that also checked the database would get
    every worker restarted while the database is down, which helps no one.
    """

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.cache_control = ["no-store"]
        resp.media = {"status": "ok"}


class MetricsResource:
    """``GET /metrics``: Prometheus' text format, summed over workers.

    SECURITY(ops): served to anyone who reaches the port; deploy/nginx
    lets only the local scraper through.
    """

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        body, content_type = exposition()
        resp.content_type = content_type
        resp.cache_control = ["no-store"]
        resp.data = body
