"""``wxpay sign`` and ``wxpay verify`` as a merchant runs them."""

import os
import subprocess
import sys
from pathlib import Path

from tests.support import cases
from tests.support import rule

WXPAY = str(Path(sys.executable).with_name("wxpay"))
KEY = "192006250b4c09247ec02edce69f6a2d"
EXAMPLE = [
    "appid=wxd930ea5d5a258f4f",
    "mch_id=10000100",
    "device_info=1000",
    "body=test",
    "nonce_str=ibuaiVcKdpRxkhJA",
]


def wxpay(*args, stdin=None, env=None):
    return subprocess.run(
        [WXPAY, *args],
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def last_line(result):
    return result.stdout.decode().strip().splitlines()[-1]


def test_sign_prints_wechats_md5_last():
    result = wxpay("sign", "--key", KEY, *EXAMPLE)

    assert result.returncode == 0
    assert last_line(result) == "9A0A8659F005D6984697E2CA0A9CF3B7"


def test_sign_prints_wechats_hmac_last():
    result = wxpay("sign", "--key", KEY, "--sign-type", "HMAC-SHA256", *EXAMPLE)

    assert last_line(result) == (
        "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
    )


def test_explain_shows_the_signed_string_with_the_key_masked():
    result = wxpay("sign", "--explain", *EXAMPLE, env={"WXPAY_API_KEY": KEY})

    out = result.stdout.decode()
    assert "appid=wxd930ea5d5a258f4f&body=test&device_info=1000" in out
    assert "&key=********" in out
    assert KEY not in out
    assert last_line(result) == "9A0A8659F005D6984697E2CA0A9CF3B7"


def test_verify_exits_0_for_a_valid_message():
    body = rule.to_xml(rule.with_sign(cases.coupon_notify(), cases.KEY))

    result = wxpay("verify", "--key", cases.KEY, stdin=body)

    assert result.returncode == 0, result.stdout


def test_verify_exits_1_for_a_tampered_message_and_shows_both_signs(tmp_path):
    message = rule.with_sign(cases.paid_notify(), cases.KEY)
    message["total_fee"] = "1"
    path = tmp_path / "notify.xml"
    path.write_bytes(rule.to_xml(message))

    result = wxpay("verify", "--key", cases.KEY, str(path))

    out = result.stdout.decode()
    assert result.returncode == 1
    assert f"received: {message['sign']}" in out
    assert f"expected: {rule.sign_md5(message, cases.KEY)}" in out
    assert "total_fee=1&" in out
    assert cases.KEY not in out


def test_verify_exits_2_for_a_hostile_message():
    body = (
        b'<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><a>&e;</a></xml>'
    )

    result = wxpay("verify", "--key", cases.KEY, stdin=body)

    assert result.returncode == 2
    assert b"DOCTYPE" in result.stdout


def test_every_command_has_help():
    for command in (["--help"], ["sign", "--help"], ["verify", "--help"]):
        assert wxpay(*command).returncode == 0


def test_verify_exits_2_when_the_file_cannot_be_read(tmp_path):
    result = wxpay("verify", "--key", cases.KEY, str(tmp_path / "missing.xml"))

    assert result.returncode == 2
    assert b"cannot read" in result.stdout
    assert b"Traceback" not in result.stderr
