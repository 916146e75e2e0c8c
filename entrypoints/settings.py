"""The service's settings, read once from the environment or a TOML file.

Names are part of the operator's contract and stay stable:

``WXPAY_APPID``, ``WXPAY_MCH_ID``, ``WXPAY_API_KEY``, ``WXPAY_SIGN_TYPE``
(``MD5`` or ``HMAC-SHA256``), ``WXPAY_API_BASE``, ``WXPAY_DATABASE_URL``,
``WXPAY_PUBLIC_URL``. ``WXPAY_CONFIG`` may name a TOML file holding the same
settings in lower case without the prefix (``appid = "wx..."``); a variable
set in the environment wins over the file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from urllib.parse import urlsplit

from domain.signature import API_KEY_LENGTH
from domain.signature import ApiKey
from domain.signature import SignType
from domain.signature import UnknownSignType

PREFIX = "WXPAY_"
DEFAULT_API_BASE = "https://api.mch.weixin.qq.com"
DEFAULT_DATABASE_URL = "sqlite:///var/wxpay.sqlite3"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
NOTIFY_PATH = "/wechatpay/notify"
CALLBACK_PATH = "/wechatpay/callback"


class ConfigError(ValueError):
    """A setting is missing or wrong; the message says which and why.

    ``problems`` lists them one by one (``wxpay config check`` prints one
    line each); the message joins them.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to talk to WeChat and to its database."""

    appid: str
    mch_id: str
    api_key: ApiKey = field(repr=False)
    sign_type: SignType = SignType.MD5
    api_base: str = DEFAULT_API_BASE
    # SECURITY(config): a server URL carries the database password.
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)
    public_url: str = DEFAULT_PUBLIC_URL

    def __post_init__(self) -> None:
        problems = []
        if not self.appid:
            problems.append("WXPAY_APPID is not set")
        if not self.mch_id:
            problems.append("WXPAY_MCH_ID is not set")
        problems.extend(api_key_problems(self.api_key.reveal()))
        for name, url in (
            ("WXPAY_API_BASE", self.api_base),
            ("WXPAY_PUBLIC_URL", self.public_url),
        ):
            problems.extend(_url_problems(name, url))
        if problems:
            raise ConfigError("; ".join(problems), problems)

    @property
    def notify_url(self) -> str:
        """Where WeChat posts payment results, derived from the public URL."""
        return self.public_url.rstrip("/") + NOTIFY_PATH

    @property
    def callback_url(self) -> str:
        """The mode-1 callback URL to register with WeChat."""
        return self.public_url.rstrip("/") + CALLBACK_PATH

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``).

        Raises:
            ConfigError: naming every setting that is missing or wrong.
        """
        environ = os.environ if environ is None else environ
        values = _from_file(environ.get(PREFIX + "CONFIG"))
        for name in (
            "appid",
            "mch_id",
            "api_key",
            "sign_type",
            "api_base",
            "database_url",
            "public_url",
        ):
            variable = PREFIX + name.upper()
            if environ.get(variable):
                values[name] = environ[variable]

        missing = [
            PREFIX + name.upper()
            for name in ("appid", "mch_id", "api_key")
            if not values.get(name)
        ]
        if missing:
            raise ConfigError(
                "not set: " + ", ".join(missing),
                [f"{name} is not set" for name in missing],
            )
        try:
            sign_type = SignType.from_wire(values.get("sign_type", "MD5"))
        except UnknownSignType as error:
            raise ConfigError(f"WXPAY_SIGN_TYPE: {error}") from None

        return cls(
            appid=values["appid"],
            mch_id=values["mch_id"],
            api_key=ApiKey(values["api_key"]),
            sign_type=sign_type,
            api_base=values.get("api_base", DEFAULT_API_BASE),
            database_url=values.get("database_url", DEFAULT_DATABASE_URL),
            public_url=values.get("public_url", DEFAULT_PUBLIC_URL),
        )


def api_key_problems(key: str) -> list[str]:
    """What is wrong with a v2 API key, without ever quoting it.

    NOTE(config): WeChat's text says only that the key is 32 bytes
    (reference §1.1, §8.4); the merchant platform makes it of letters
    and digits. The strict reading is taken: 32 ASCII letters or digits.
    Whitespace at either end is named on its own, as it usually comes
    from copying the key, and its length is then counted without it.
    """
    # SECURITY(config): lengths and kinds of characters are reported,
    # never the key or any character of it.
    problems = []
    stripped = key.strip()
    if stripped != key:
        problems.append(
            "WXPAY_API_KEY starts or ends with whitespace (a space or a"
            " newline copied with it?): remove it"
        )
    if len(stripped) != API_KEY_LENGTH:
        problems.append(
            f"WXPAY_API_KEY has {len(stripped)} characters; the v2"
            f" API key is exactly {API_KEY_LENGTH} (not the AppSecret"
            " and not the APIv3 key)"
        )
    if not (stripped.isascii() and stripped.isalnum()):
        problems.append(
            "WXPAY_API_KEY holds characters other than ASCII letters and"
            " digits (a space, punctuation, or a non-ASCII letter); the v2"
            " API key is made of letters and digits only"
        )
    return problems


def _url_problems(name: str, url: str) -> list[str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"{name} must be an absolute http(s) URL"]
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port <= 65535:
        return [f"{name} has a port that is not a number from 1 to 65535"]
    if parts.query or parts.fragment:
        return [f"{name} must not have a query or fragment"]
    return []


def _from_file(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    try:
        with Path(path).open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"WXPAY_CONFIG: cannot read {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"WXPAY_CONFIG: {path} is not TOML: {error}") from None
    return {str(name): str(value) for name, value in data.items()}
