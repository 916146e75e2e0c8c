"""Alembic migrations: the schema of every SQL database the service uses.

Run them with ``wxpay db upgrade``; no ``alembic.ini`` is needed, see
``adapters/alembic_migrations.py``.
"""
