import pytest

from domain.signature import SignType
from entrypoints.settings import ConfigError
from entrypoints.settings import Settings
from tests.support import cases

BASE = {
    "WXPAY_APPID": cases.APPID,
    "WXPAY_MCH_ID": cases.MCH_ID,
    "WXPAY_API_KEY": cases.KEY,
}


def test_settings_come_from_the_environment_with_safe_defaults():
    settings = Settings.from_env(BASE)

    assert settings.sign_type is SignType.MD5
    assert settings.api_base == "https://api.mch.weixin.qq.com"
    assert settings.database_url.startswith("sqlite:///var/")
    assert settings.notify_url == "http://127.0.0.1:8000/wechatpay/notify"


def test_the_notify_url_is_derived_from_the_public_url():
    env = {**BASE, "WXPAY_PUBLIC_URL": "https://pay.example.com/shop/"}

    settings = Settings.from_env(env)

    assert settings.notify_url == "https://pay.example.com/shop/wechatpay/notify"


def test_a_key_that_is_not_32_characters_is_refused_at_start_up():
    with pytest.raises(ConfigError, match="3 characters") as caught:
        Settings.from_env({**BASE, "WXPAY_API_KEY": "abc"})

    assert "abc" not in str(caught.value)


def test_missing_settings_are_all_named():
    with pytest.raises(ConfigError, match="WXPAY_APPID, WXPAY_MCH_ID"):
        Settings.from_env({"WXPAY_API_KEY": cases.KEY})


@pytest.mark.parametrize("value", ["md5", "SHA1", "HMAC_SHA256"])
def test_an_unknown_sign_type_is_refused(value):
    with pytest.raises(ConfigError, match="WXPAY_SIGN_TYPE"):
        Settings.from_env({**BASE, "WXPAY_SIGN_TYPE": value})


def test_a_public_url_with_a_query_is_refused():
    env = {**BASE, "WXPAY_PUBLIC_URL": "https://shop.example/?x=1"}

    with pytest.raises(ConfigError, match="WXPAY_PUBLIC_URL"):
        Settings.from_env(env)


def test_a_toml_file_is_read_and_the_environment_wins(tmp_path):
    config = tmp_path / "wxpay.toml"
    config.write_text(
        f'appid = "{cases.APPID}"\nmch_id = "1"\napi_key = "{cases.KEY}"\n'
        'sign_type = "HMAC-SHA256"\n'
    )

    settings = Settings.from_env(
        {"WXPAY_CONFIG": str(config), "WXPAY_MCH_ID": cases.MCH_ID}
    )

    assert settings.mch_id == cases.MCH_ID
    assert settings.sign_type is SignType.HMAC_SHA256


def test_the_api_key_never_shows_in_the_settings_repr():
    settings = Settings.from_env(BASE)

    assert cases.KEY not in repr(settings)
    assert cases.KEY not in str(settings)


def test_the_database_password_never_shows_in_the_settings_repr():
    url = "postgresql+psycopg://wxpay:s3cret-pw@db.example/wxpay"

    settings = Settings.from_env({**BASE, "WXPAY_DATABASE_URL": url})

    assert settings.database_url == url
    assert "s3cret-pw" not in repr(settings)
