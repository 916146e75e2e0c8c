"""The Alembic migrations are the schema, on every database we support."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from adapters import alembic_migrations
from adapters.sqlalchemy_store import create_engine_for
from adapters.sqlalchemy_tables import metadata
from entrypoints import cli
from entrypoints.commands import catalogue
from entrypoints.commands import database
from tests.support.databases import BACKENDS

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"products", "checkouts", "orders", "inbound_messages"}


@pytest.fixture(params=BACKENDS)
def fresh_url(request, database_servers):
    return database_servers.fresh(request.param)


@pytest.fixture
def engine(fresh_url):
    made = create_engine_for(fresh_url)
    yield made
    made.dispose()


def table_names(engine):
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def schema_differences(engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, metadata)


def run_db(*argv):
    """Run ``wxpay db ...`` in this process, through its own parser."""
    parser = argparse.ArgumentParser(prog="wxpay")
    subparsers = parser.add_subparsers(dest="command", required=True)
    database.register(subparsers)
    args = parser.parse_args(["db", *argv])
    return args.func(args)


def test_an_empty_database_migrates_to_the_code_schema(engine):
    assert alembic_migrations.current_revision(engine) is None
    assert not alembic_migrations.is_at_head(engine)

    alembic_migrations.upgrade(engine)

    assert alembic_migrations.is_at_head(engine)
    assert table_names(engine) == TABLES
    assert schema_differences(engine) == []


def test_a_downgrade_to_base_empties_and_an_upgrade_restores(engine):
    alembic_migrations.upgrade(engine)

    alembic_migrations.downgrade(engine, "base")

    assert alembic_migrations.current_revision(engine) is None
    assert table_names(engine) == set()

    alembic_migrations.upgrade(engine)

    assert alembic_migrations.is_at_head(engine)
    assert table_names(engine) == TABLES


def test_db_upgrade_twice_is_harmless(fresh_url, engine, monkeypatch, capsys):
    monkeypatch.setenv("WXPAY_DATABASE_URL", fresh_url)

    first = run_db("upgrade")
    second = run_db("upgrade")

    assert (first, second) == (0, 0)
    assert alembic_migrations.is_at_head(engine)
    assert run_db("status") == 0
    head = alembic_migrations.head_revision()
    assert f"is at revision {head}" in capsys.readouterr().out


def test_db_status_fails_before_the_first_upgrade(fresh_url, monkeypatch):
    monkeypatch.setenv("WXPAY_DATABASE_URL", fresh_url)

    assert run_db("status") == 1


def test_two_db_upgrades_at_once_both_succeed(fresh_url, engine):
    environment = {
        **os.environ,
        "WXPAY_DATABASE_URL": fresh_url,
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "entrypoints.cli", "db", "upgrade"]

    runs = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = [(run.wait(timeout=60), *run.communicate()) for run in runs]

    assert [status for status, _, _ in results] == [0, 0], results
    assert alembic_migrations.is_at_head(engine)
    assert schema_differences(engine) == []


def test_migrations_are_found_from_outside_the_checkout(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = (
        "from adapters.alembic_migrations import head_revision; print(head_revision())"
    )

    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == alembic_migrations.head_revision()


def test_the_wxpay_command_offers_db_and_product():
    assert "entrypoints.commands.database" in cli.COMMAND_MODULES
    assert "entrypoints.commands.catalogue" in cli.COMMAND_MODULES
    assert callable(catalogue.register)
