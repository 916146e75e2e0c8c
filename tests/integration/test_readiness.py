"""``GET /readyz``: ready only when the database answers at the newest
migration; otherwise a 503 that names the failed check, never a 500."""

import pytest
from falcon import testing

from adapters import alembic_migrations
from adapters.sqlalchemy_store import create_engine_for
from domain.signature import ApiKey
from entrypoints.app import create_app
from entrypoints.bootstrap import build_service
from entrypoints.settings import Settings
from tests.support import cases
from tests.support.checkout_app import seeded_store
from tests.support.checkout_app import service_over
from tests.support.databases import DEAD_URLS
from tests.support.fakes import FakeGateway
from tests.support.fakes import FixedClock


def settings_for(database_url):
    return Settings(
        appid=cases.APPID,
        mch_id=cases.MCH_ID,
        api_key=ApiKey(cases.KEY),
        api_base="http://127.0.0.1:9",
        database_url=database_url,
    )


def readyz(service):
    return testing.TestClient(create_app(service)).simulate_get("/readyz")


def in_memory(**options):
    clock = FixedClock()
    return service_over(seeded_store(clock), FakeGateway(), clock, **options)


def test_in_memory_storage_is_always_ready():
    result = readyz(in_memory())

    assert result.status_code == 200
    assert result.json == {"status": "ready"}
    assert "no-store" in result.headers["Cache-Control"]


def test_a_probe_with_problems_is_a_503_listing_them():
    result = readyz(in_memory(readiness=lambda: ["database: down"]))

    assert result.status_code == 503
    assert result.json == {"status": "not ready", "problems": ["database: down"]}


def test_a_probe_that_crashes_is_a_503_not_a_500(caplog):
    def crash():
        raise RuntimeError("bug")

    result = readyz(in_memory(readiness=crash))

    assert result.status_code == 503
    assert result.json["problems"][0].startswith("probe:")
    assert any(r.levelname == "ERROR" for r in caplog.records)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path}/wxpay.sqlite3"


def test_a_migrated_database_is_ready(sqlite_url):
    engine = create_engine_for(sqlite_url)
    alembic_migrations.upgrade(engine)
    engine.dispose()

    result = readyz(build_service(settings_for(sqlite_url)))

    assert result.status_code == 200
    assert result.json == {"status": "ready"}


def test_a_database_behind_on_migrations_is_not_ready(sqlite_url):
    engine = create_engine_for(sqlite_url)
    alembic_migrations.upgrade(engine, "0001")
    engine.dispose()

    result = readyz(build_service(settings_for(sqlite_url)))

    assert result.status_code == 503
    (problem,) = result.json["problems"]
    assert problem.startswith("migrations:")
    assert "0001" in problem and "wxpay db upgrade" in problem


def test_an_empty_database_is_not_ready(sqlite_url):
    result = readyz(build_service(settings_for(sqlite_url)))

    assert result.status_code == 503
    assert result.json["problems"][0].startswith("migrations:")


def test_a_database_that_does_not_answer_is_not_ready(caplog):
    dead = DEAD_URLS["postgresql"]

    result = readyz(build_service(settings_for(dead)))

    assert result.status_code == 503
    (problem,) = result.json["problems"]
    assert problem.startswith("database:")
    # SECURITY(ops): the address and password go to the log, not out.
    assert "127.0.0.1" not in result.text and "s3cret-pw" not in result.text
    assert any("not ready" in r.getMessage() for r in caplog.records)
