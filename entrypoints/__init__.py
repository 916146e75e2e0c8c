"""Entrypoints: the CLI, the Falcon app and its WSGI middleware."""
