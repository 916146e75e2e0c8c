"""Type names for plain WSGI callables."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
