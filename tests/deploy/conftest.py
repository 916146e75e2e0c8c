"""Fixtures for the deploy proofs: real gunicorn, nginx and databases.

Each test starts the processes it needs (the checkout service under
gunicorn, nginx in front of it) against a fresh database, and the one
simulator of the session plays WeChat for all of them.
"""

import pytest

from tests.support.databases import database_servers  # noqa: F401
from tests.support.service import merchant_env
from tests.support.service import prepare_database
from tests.support.simulator import running_simulator


@pytest.fixture(scope="session")
def simulator():
    with running_simulator(time_scale=0.01) as running:
        yield running


@pytest.fixture
def fresh_service_env(database_servers, simulator):  # noqa: F811
    """Make a migrated database with the products; return its service env."""

    def make(backend, public_url="http://127.0.0.1:9"):
        url = database_servers.fresh(backend)
        env = merchant_env(simulator.url, public_url, url)
        prepare_database(env)
        return env

    return make
