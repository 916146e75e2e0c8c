"""gunicorn's access log, with every value kept on its own line."""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from entrypoints.observability import escape_controls


class EscapingLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, escaping control characters in access-log values.

    SECURITY(logging): a path like ``/x%0aremote=10.0.0.1 status=200``
    would otherwise write a forged line into the access log.
    """

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> Any:
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            name: escape_controls(value) if isinstance(value, str) else value
            for name, value in atoms.items()
        }
