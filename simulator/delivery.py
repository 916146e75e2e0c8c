"""Posting to the merchant: notifies on WeChat's retry schedule, callbacks.

Every exchange lands in the ``DeliveryLog`` with its request, reply and
verdict. Notifies retry on a background thread per delivery, on WeChat's
schedule multiplied by a time scale, and stop when the simulator stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import urllib3

from adapters import xml_codec
from simulator.state import BEIJING
from simulator.state import FaultBook

logger = logging.getLogger(__name__)

# Seconds WeChat waits before each retry of an unanswered notify.
RETRY_SCHEDULE = (
    15,
    15,
    30,
    180,
    600,
    1200,
    1800,
    1800,
    1800,
    3600,
    10800,
    10800,
    10800,
    21600,
    21600,
)
# NOTE(simulator): whether the 15 intervals mean 16 deliveries is
# unconfirmed; the simulator delivers once and then retries 15 times.
MAX_REPLY_BYTES = 64 * 1024


@dataclass(frozen=True)
class Reply:
    """What came back from one POST to the merchant."""

    status: int | None
    body: bytes
    error: str
    elapsed: float


@dataclass(frozen=True)
class LogEntry:
    """One callback or notify the simulator delivered, and its verdict."""

    seq: int
    kind: str
    url: str
    request: str
    status: int | None
    reply: str
    verdict: str
    accepted: bool
    attempt: int
    at: str
    out_trade_no: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class DeliveryLog:
    """Every callback and notify delivered, oldest first."""

    def __init__(self) -> None:
        self._entries: list[LogEntry] = []
        self._lock = threading.Lock()

    def add(self, **values: Any) -> LogEntry:
        with self._lock:
            entry = LogEntry(
                seq=len(self._entries) + 1,
                at=datetime.now(BEIJING).isoformat(timespec="milliseconds"),
                **values,
            )
            self._entries.append(entry)
        logger.info(
            "delivered kind=%s url=%s status=%s accepted=%s verdict=%r",
            entry.kind,
            entry.url,
            entry.status,
            entry.accepted,
            entry.verdict,
        )
        return entry

    def entries(self, kind: str = "", since: int = 0) -> list[LogEntry]:
        with self._lock:
            return [
                entry
                for entry in self._entries
                if entry.seq > since and (not kind or entry.kind == kind)
            ]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def judge_notify_reply(reply: Reply) -> tuple[bool, str]:
    """Decide, as WeChat does, whether a notify was acknowledged."""
    if reply.status is None:
        return False, reply.error
    if reply.status != 200:
        return False, f"HTTP {reply.status}"
    try:
        fields = xml_codec.parse(reply.body)
    except xml_codec.XmlRejected as error:
        return False, f"the reply is not WeChat XML: {error}"
    if fields.get("return_code") != "SUCCESS":
        return False, f"return_code is {fields.get('return_code')!r}"
    return True, "acknowledged"


class Deliverer:
    """Post notifies and callbacks to merchants over HTTP.

    Args:
        faults: where ``drop_notify`` faults are taken from.
        log: where every exchange is recorded.
        time_scale: multiplies the retry schedule (0.01 turns 15 s into
            0.15 s).
        timeout: seconds the merchant has to answer.
    """

    def __init__(
        self,
        faults: FaultBook,
        log: DeliveryLog,
        *,
        time_scale: float = 1.0,
        timeout: float = 5.0,
        schedule: tuple[float, ...] = RETRY_SCHEDULE,
    ) -> None:
        self.faults = faults
        self.log = log
        self.time_scale = time_scale
        self.timeout = timeout
        self.schedule = schedule
        self._http = urllib3.PoolManager(num_pools=8, maxsize=8, retries=False)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def post(self, url: str, body: bytes) -> Reply:
        """One POST of WeChat XML; never raises for network trouble."""
        started = time.monotonic()
        try:
            response = self._http.request(
                "POST",
                url,
                body=body,
                headers={"Content-Type": "text/xml; charset=utf-8"},
                timeout=urllib3.Timeout(total=self.timeout),
                redirect=False,
                preload_content=False,
            )
            try:
                data = response.read(MAX_REPLY_BYTES + 1)
            finally:
                response.release_conn()
        except urllib3.exceptions.HTTPError as error:
            elapsed = time.monotonic() - started
            kind = type(error).__name__
            return Reply(None, b"", f"no answer ({kind}) after {elapsed:.2f}s", elapsed)
        elapsed = time.monotonic() - started
        if elapsed > self.timeout:
            return Reply(None, data, f"answered after {elapsed:.2f}s", elapsed)
        return Reply(response.status, data, "", elapsed)

    def notify(
        self,
        kind: str,
        url: str,
        fields: Mapping[str, str],
        *,
        out_trade_no: str,
        twice: bool = False,
    ) -> None:
        """Deliver a notify in the background until it is acknowledged.

        Args:
            twice: start two deliveries at once, as WeChat's several
                servers sometimes do.
        """
        body = xml_codec.write(fields)
        for _ in range(2 if twice else 1):
            thread = threading.Thread(
                target=self._deliver,
                args=(kind, url, body, out_trade_no),
                name=f"notify-{out_trade_no}",
                daemon=True,
            )
            with self._lock:
                if self._stopping.is_set():
                    return
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop every pending retry; wait briefly for deliveries in flight."""
        self._stopping.set()
        with self._lock:
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._http.clear()

    def _deliver(self, kind: str, url: str, body: bytes, out_trade_no: str) -> None:
        waits = (0.0, *self.schedule)
        for attempt, wait in enumerate(waits, start=1):
            if self._stopping.wait(wait * self.time_scale):
                return
            request = body.decode()
            if self.faults.take("notify") is not None:
                self.log.add(
                    kind=kind,
                    url=url,
                    request=request,
                    status=None,
                    reply="",
                    verdict="dropped on purpose (drop_notify fault)",
                    accepted=False,
                    attempt=attempt,
                    out_trade_no=out_trade_no,
                )
                continue
            reply = self.post(url, body)
            accepted, verdict = judge_notify_reply(reply)
            self.log.add(
                kind=kind,
                url=url,
                request=request,
                status=reply.status,
                reply=reply.body.decode("utf-8", "replace"),
                verdict=verdict,
                accepted=accepted,
                attempt=attempt,
                out_trade_no=out_trade_no,
            )
            if accepted:
                return
        logger.warning(
            "notify given up kind=%s out_trade_no=%s attempts=%d",
            kind,
            out_trade_no,
            len(waits),
        )
