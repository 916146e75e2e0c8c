"""How the simulator is configured: merchants, time scale, time budget.

By default its one merchant comes from the service's own variables
(``WXPAY_APPID``, ``WXPAY_MCH_ID``, ``WXPAY_API_KEY``, ``WXPAY_SIGN_TYPE``)
plus ``WXPAY_CALLBACK_URL`` (default: the service's callback URL derived
from ``WXPAY_PUBLIC_URL``), so one environment configures both sides. A
TOML file may list several merchants instead::

    [[merchant]]
    appid = "wx0000000000fake01"
    mch_id = "9990000001"
    api_key = "..."              # the 32-character v2 API key
    sign_type = "MD5"            # or "HMAC-SHA256"
    callback_url = "http://127.0.0.1:8000/wechatpay/callback"
    refund_notify_url = ""       # used when a refund names no notify_url
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from domain.signature import API_KEY_LENGTH
from domain.signature import ApiKey
from domain.signature import SignType
from domain.signature import UnknownSignType
from entrypoints.settings import ConfigError
from entrypoints.settings import Settings
from simulator.state import Merchant

DEFAULT_CALLBACK_TIMEOUT = 5.0


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything ``create_app`` needs.

    ``callback_timeout`` is the seconds a merchant has to answer a mode-1
    callback or a notify. NOTE(simulator): WeChat's real budget is
    unconfirmed; 5 s matches what it documents for v3 notifies.
    """

    merchants: tuple[Merchant, ...]
    time_scale: float = 1.0
    callback_timeout: float = DEFAULT_CALLBACK_TIMEOUT

    def __post_init__(self) -> None:
        if not self.merchants:
            raise ConfigError("the simulator needs at least one merchant")
        if self.time_scale <= 0:
            raise ConfigError("--time-scale must be above 0")
        if self.callback_timeout <= 0:
            raise ConfigError("--callback-timeout must be above 0")


def merchant_from_env(environ: Mapping[str, str] | None = None) -> Merchant:
    """The one merchant the service's own environment describes.

    Raises:
        ConfigError: as ``Settings.from_env`` does.
    """
    environ = os.environ if environ is None else environ
    settings = Settings.from_env(environ)
    return Merchant(
        appid=settings.appid,
        mch_id=settings.mch_id,
        api_key=settings.api_key,
        sign_type=settings.sign_type,
        callback_url=environ.get("WXPAY_CALLBACK_URL") or settings.callback_url,
    )


def merchants_from_file(path: str | Path) -> tuple[Merchant, ...]:
    """Read ``[[merchant]]`` tables from a TOML file.

    Raises:
        ConfigError: naming the file, the table and the problem.
    """
    try:
        with Path(path).open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"--merchants: cannot read {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"--merchants: {path} is not TOML: {error}") from None
    tables = data.get("merchant")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"--merchants: {path} has no [[merchant]] table")
    merchants = []
    for index, table in enumerate(tables, start=1):
        where = f"--merchants: {path}, merchant #{index}"
        values = {str(name): str(value) for name, value in table.items()}
        missing = [n for n in ("appid", "mch_id", "api_key") if not values.get(n)]
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}")
        if len(values["api_key"]) != API_KEY_LENGTH:
            raise ConfigError(f"{where}: api_key must have {API_KEY_LENGTH} characters")
        try:
            sign_type = SignType.from_wire(values.get("sign_type", "MD5"))
        except UnknownSignType as error:
            raise ConfigError(f"{where}: {error}") from None
        merchants.append(
            Merchant(
                appid=values["appid"],
                mch_id=values["mch_id"],
                api_key=ApiKey(values["api_key"]),
                sign_type=sign_type,
                callback_url=values.get("callback_url", ""),
                refund_notify_url=values.get("refund_notify_url", ""),
            )
        )
    ids = [merchant.mch_id for merchant in merchants]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--merchants: {path} lists a mch_id twice")
    return tuple(merchants)
