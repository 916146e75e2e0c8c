"""``wxpay config check``: one line per problem, exit 1; exit 0 when fine.

Whatever the outcome, the API key is never printed.
"""

import pytest

from adapters import alembic_migrations
from adapters.sqlalchemy_store import create_engine_for
from entrypoints import cli
from tests.support import cases
from tests.support.databases import DEAD_URLS

VARIABLES = (
    "WXPAY_APPID",
    "WXPAY_MCH_ID",
    "WXPAY_API_KEY",
    "WXPAY_SIGN_TYPE",
    "WXPAY_API_BASE",
    "WXPAY_DATABASE_URL",
    "WXPAY_PUBLIC_URL",
    "WXPAY_CONFIG",
)


@pytest.fixture
def migrated_url(tmp_path):
    url = f"sqlite:///{tmp_path}/wxpay.sqlite3"
    engine = create_engine_for(url)
    alembic_migrations.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def env(monkeypatch, migrated_url):
    """A configuration with nothing wrong; tests break one thing each."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    values = {
        "WXPAY_APPID": cases.APPID,
        "WXPAY_MCH_ID": cases.MCH_ID,
        "WXPAY_API_KEY": cases.KEY,
        "WXPAY_PUBLIC_URL": "https://shop.example/pay",
        "WXPAY_DATABASE_URL": migrated_url,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)

    def change(**changes):
        for name, value in changes.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)

    return change


def check(capsys, key=cases.KEY):
    status = cli.main(["config", "check"])
    out, err = capsys.readouterr()
    # SECURITY(config): never the key, whatever went wrong.
    assert key not in out and key not in err
    problems = [
        line.removeprefix("problem: ")
        for line in out.splitlines()
        if line.startswith("problem: ")
    ]
    return status, problems, out


def test_a_good_configuration_passes(env, capsys):
    status, problems, out = check(capsys)

    assert (status, problems) == (0, [])
    assert out.startswith("ok: mch_id=9990000001")
    assert "notify_url=https://shop.example/pay/wechatpay/notify" in out


def test_each_missing_variable_is_one_line_saying_what_to_set(env, capsys):
    env(WXPAY_APPID=None, WXPAY_API_KEY=None)

    status, problems, _ = check(capsys)

    assert status == 1
    assert len(problems) == 2
    assert problems[0].startswith("WXPAY_APPID is not set: set it to the appid")
    assert problems[1].startswith("WXPAY_API_KEY is not set: set it to the 32")


def test_a_key_of_the_wrong_length_is_reported_without_the_key(env, capsys):
    env(WXPAY_API_KEY="zq7")

    status, problems, _ = check(capsys, key="zq7")

    assert status == 1
    (problem,) = problems
    assert "WXPAY_API_KEY has 3 characters" in problem
    assert "32" in problem


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("TESTKEY0TESTKEY0 ESTKEY0TESTKEY0", "other than ASCII letters and digits"),
        ("TESTKEY0TESTKEY0TÉSTKEY0TESTKEY0", "other than ASCII letters and digits"),
        ("TESTKEY0TESTKEY0TEST-EY0TESTKEY0", "other than ASCII letters and digits"),
        (cases.KEY + "\n", "starts or ends with whitespace"),
        (" " + cases.KEY, "starts or ends with whitespace"),
    ],
    ids=["a space", "non-ASCII", "punctuation", "a newline after", "a space before"],
)
def test_a_key_that_is_not_32_ascii_letters_and_digits_is_reported(
    env, capsys, key, says
):
    env(WXPAY_API_KEY=key)

    status, problems, out = check(capsys, key=key.strip())

    assert status == 1
    (problem,) = problems
    assert problem.startswith("WXPAY_API_KEY ")
    assert says in problem
    assert key.strip()[:8] not in out


def test_a_public_url_with_a_query_is_reported(env, capsys):
    env(WXPAY_PUBLIC_URL="https://shop.example/pay?x=1")

    status, problems, _ = check(capsys)

    assert status == 1
    assert problems == ["WXPAY_PUBLIC_URL must not have a query or fragment"]


def test_a_relative_public_url_is_reported(env, capsys):
    env(WXPAY_PUBLIC_URL="shop.example/pay")

    status, problems, _ = check(capsys)

    assert status == 1
    assert problems == ["WXPAY_PUBLIC_URL must be an absolute http(s) URL"]


def test_a_plain_http_notify_url_on_a_public_host_is_a_problem(env, capsys):
    env(WXPAY_PUBLIC_URL="http://shop.example/pay")

    status, problems, _ = check(capsys)

    assert status == 1
    (problem,) = problems
    assert "http://shop.example/pay/wechatpay/notify" in problem
    assert "https" in problem
    assert "set WXPAY_PUBLIC_URL to https://shop.example/pay" in problem


def test_the_https_advice_keeps_the_url_whatever_the_schemes_case(env, capsys):
    env(WXPAY_PUBLIC_URL="HTTP://shop.example.com")

    status, problems, _ = check(capsys)

    assert status == 1
    (problem,) = problems
    assert problem.endswith(
        "set WXPAY_PUBLIC_URL to https://shop.example.com (behind a TLS proxy)"
    )


@pytest.mark.parametrize("port", ["99999", "0", "80a"])
@pytest.mark.parametrize("variable", ["WXPAY_PUBLIC_URL", "WXPAY_API_BASE"])
def test_a_url_with_an_impossible_port_is_reported(env, capsys, variable, port):
    env(**{variable: f"https://shop.example.com:{port}"})

    status, problems, _ = check(capsys)

    assert status == 1
    assert problems == [f"{variable} has a port that is not a number from 1 to 65535"]


@pytest.mark.parametrize(
    ("url", "advice"),
    [
        ("mysql://wxpay:s3cret-pw@db/wxpay", "use mysql+pymysql://"),
        ("mariadb+mariadbconnector://wxpay:s3cret-pw@db/wxpay", "use mysql+pymysql://"),
        ("postgresql+psycopg2://wxpay:s3cret-pw@db/wxpay", "use postgresql+psycopg://"),
        ("oracle://wxpay:s3cret-pw@db/wxpay", "use postgresql+psycopg://, mysql"),
    ],
)
def test_a_database_driver_we_do_not_ship_is_named_with_the_ones_we_do(
    env, capsys, url, advice
):
    env(WXPAY_DATABASE_URL=url)

    status, problems, out = check(capsys)

    assert status == 1
    (problem,) = problems
    scheme = url.split("://")[0]
    assert problem.startswith(f"WXPAY_DATABASE_URL starts {scheme}://, which")
    assert advice in problem
    assert "postgresql+psycopg://, mysql+pymysql:// or sqlite:///" in problem
    assert "ModuleNotFoundError" not in out
    assert "s3cret-pw" not in out


def test_a_url_without_a_driver_is_fine_when_the_default_is_one_we_ship(env, capsys):
    # SQLAlchemy 2 gives postgresql:// psycopg, which we ship: the check
    # goes on to the database itself (here, one that does not answer).
    env(WXPAY_DATABASE_URL=DEAD_URLS["postgresql"].replace("+psycopg", ""))

    status, problems, _ = check(capsys)

    assert status == 1
    (problem,) = problems
    assert problem.startswith("the database does not answer")


def test_an_unknown_database_scheme_says_which_are_supported(env, capsys):
    env(WXPAY_DATABASE_URL="nosuchdb://wxpay:s3cret-pw@db/wxpay")

    status, problems, out = check(capsys)

    assert status == 1
    (problem,) = problems
    assert "postgresql+psycopg://, mysql+pymysql:// or sqlite:///" in problem
    assert "s3cret-pw" not in out


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"]
)
def test_plain_http_on_a_loopback_host_is_fine(env, capsys, url):
    env(WXPAY_PUBLIC_URL=url, WXPAY_API_BASE="http://127.0.0.1:8001")

    assert check(capsys)[:2] == (0, [])


def test_a_notify_url_longer_than_wechat_takes_is_reported(env, capsys):
    env(WXPAY_PUBLIC_URL="https://shop.example/" + "p" * 240)

    status, problems, _ = check(capsys)

    assert status == 1
    (problem,) = problems
    assert "at most 256" in problem


def test_a_plain_http_api_base_on_a_public_host_is_a_problem(env, capsys):
    env(WXPAY_API_BASE="http://api.mch.weixin.qq.com")

    status, problems, _ = check(capsys)

    assert status == 1
    (problem,) = problems
    assert problem.startswith("WXPAY_API_BASE http://api.mch.weixin.qq.com")
    assert "https://api.mch.weixin.qq.com" in problem


def test_a_database_that_does_not_answer_is_reported(env, capsys):
    env(WXPAY_DATABASE_URL=DEAD_URLS["postgresql"])

    status, problems, out = check(capsys)

    assert status == 1
    (problem,) = problems
    assert problem.startswith("the database does not answer")
    assert "WXPAY_DATABASE_URL" in problem
    assert "s3cret-pw" not in out


def test_a_database_behind_on_migrations_is_reported(env, capsys, tmp_path):
    url = f"sqlite:///{tmp_path}/old.sqlite3"
    engine = create_engine_for(url)
    alembic_migrations.upgrade(engine, "0001")
    engine.dispose()
    env(WXPAY_DATABASE_URL=url)

    status, problems, _ = check(capsys)

    assert status == 1
    assert problems == [
        "the database schema is at 0001, the code needs"
        f" {alembic_migrations.head_revision()}: run `wxpay db upgrade`"
    ]


def test_several_problems_are_each_one_line(env, capsys, tmp_path):
    env(
        WXPAY_PUBLIC_URL="http://shop.example",
        WXPAY_DATABASE_URL=f"sqlite:///{tmp_path}/empty.sqlite3",
    )

    status, problems, _ = check(capsys)

    assert status == 1
    assert len(problems) == 2
    assert "https" in problems[0]
    assert "no revision" in problems[1]
