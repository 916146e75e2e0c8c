"""Alembic's entry point, configured from code rather than alembic.ini.

``adapters.alembic_migrations`` passes an open connection (already holding
the migration lock) in ``config.attributes["connection"]``. Run by hand,
``alembic -c <ini>`` falls back to ``sqlalchemy.url`` or WXPAY_DATABASE_URL.
"""

import os

from alembic import context
from sqlalchemy.engine import Connection

from adapters.sqlalchemy_store import create_engine_for
from adapters.sqlalchemy_tables import metadata

config = context.config


def database_url() -> str:
    from entrypoints.settings import DEFAULT_DATABASE_URL

    return (
        config.get_main_option("sqlalchemy.url")
        or os.environ.get("WXPAY_DATABASE_URL")
        or DEFAULT_DATABASE_URL
    )


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    engine = create_engine_for(database_url())
    try:
        with engine.connect() as fresh:
            run_on(fresh)
            fresh.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
