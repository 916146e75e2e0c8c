"""The system clock, behind the domain's Clock port."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime

from domain.ports import Clock


class SystemClock(Clock):
    """Real time, always timezone-aware (UTC)."""

    def now(self) -> datetime:
        return datetime.now(UTC)
