"""Read a request body without ever holding more than a limit of it."""

from __future__ import annotations

from typing import Protocol

import falcon


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_bounded(req: falcon.Request, limit: int) -> bytes:
    """Return the body, or its first ``limit + 1`` bytes when it is longer.

    The caller refuses a result longer than ``limit``. Content-Length is
    not trusted to bound the read: at most ``limit + 1`` bytes are read
    whatever it says.
    """
    stream: _Readable = req.bounded_stream
    if req.content_length is None and req.env.get("wsgi.input_terminated"):
        # NOTE(http): a chunked body has no Content-Length; falcon's
        # bounded stream would read nothing, while a server that marks
        # wsgi.input_terminated (gunicorn does) ends the raw stream at
        # the body's end, so reading it cannot block past the body.
        stream = req.stream
    data: bytes = stream.read(limit + 1)
    return data
