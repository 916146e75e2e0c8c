"""The WSGI callable gunicorn serves (``entrypoints.wsgi:application``)."""

from __future__ import annotations

from entrypoints.app import application_from_env

application = application_from_env()
