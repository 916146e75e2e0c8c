import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.signature import ApiKey
from domain.signature import SignatureInvalid
from domain.signature import SignType
from domain.signature import check_signature
from domain.signature import explain
from domain.signature import sign
from domain.signature import signed
from domain.signature import string_to_sign
from domain.signature import verify
from tests.support import cases
from tests.support import rule

WECHAT_KEY = ApiKey("192006250b4c09247ec02edce69f6a2d")
WECHAT_EXAMPLE = {
    "appid": "wxd930ea5d5a258f4f",
    "mch_id": "10000100",
    "device_info": "1000",
    "body": "test",
    "nonce_str": "ibuaiVcKdpRxkhJA",
}
KEY = ApiKey(cases.KEY)
MD5 = SignType.MD5
HMAC = SignType.HMAC_SHA256


def test_wechats_worked_example_gives_the_published_md5():
    assert sign(WECHAT_EXAMPLE, WECHAT_KEY, MD5) == "9A0A8659F005D6984697E2CA0A9CF3B7"


def test_wechats_worked_example_gives_the_published_hmac():
    assert sign(WECHAT_EXAMPLE, WECHAT_KEY, HMAC) == (
        "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
    )


def test_the_wechatpy_vector_gives_its_published_values():
    fields = {"test1": "test1", "test2": "test2"}

    assert sign(fields, WECHAT_KEY, MD5) == "1E3A8D73B5A4AEE787C0F68B5DAB8520"
    assert sign(fields, WECHAT_KEY, HMAC) == (
        "EDAC6D70D2FDF5A2382F8204FC96A1918017E46ACC5297F565ED1A7610ACF659"
    )


def test_the_signed_string_is_sorted_and_skips_sign_and_empty_values():
    fields = {"b": "2", "a": "1", "sign": "X", "c": "", "sign_type": "MD5"}

    assert string_to_sign(fields) == "a=1&b=2&sign_type=MD5"
    assert explain(fields).endswith("&key=********")


def test_names_sort_by_byte_value_so_upper_case_comes_first():
    assert string_to_sign({"a": "1", "B": "2", "_": "3"}) == "B=2&_=3&a=1"


def test_zero_is_a_value_and_is_signed():
    assert string_to_sign({"coupon_count": "0"}) == "coupon_count=0"


def test_values_are_signed_raw_without_trimming_or_encoding():
    fields = {"body": " a&b=c <d> 中文 "}

    assert string_to_sign(fields) == "body= a&b=c <d> 中文 "
    assert sign(fields, KEY, MD5) == rule.sign_md5(fields, cases.KEY)


def test_signed_drops_empty_values_so_none_is_ever_sent():
    message = signed({"attach": "", "body": "x"}, KEY, MD5)

    assert "attach" not in message
    assert message["sign"] == rule.sign_md5({"body": "x"}, cases.KEY)


@pytest.mark.parametrize(
    "notify",
    [cases.paid_notify(), cases.coupon_notify(), cases.promotion_notify()],
    ids=["plain", "coupon fields (C01)", "extension fields (C02)"],
)
def test_every_received_field_is_verified(notify):
    message = rule.with_sign(notify, cases.KEY)

    verify(message, KEY, MD5)


def test_a_dropped_coupon_field_breaks_the_signature():
    message = rule.with_sign(cases.coupon_notify(), cases.KEY)
    del message["coupon_id_0"]

    with pytest.raises(SignatureInvalid):
        verify(message, KEY, MD5)


def test_empty_fields_are_left_out_of_verification():
    notify = cases.paid_notify(attach="", device_info="")
    good = rule.with_sign(notify, cases.KEY)
    with_empty_signed = {
        **notify,
        "sign": rule.sign_md5_keeping_empties(notify, cases.KEY),
    }

    verify(good, KEY, MD5)
    with pytest.raises(SignatureInvalid):
        verify(with_empty_signed, KEY, MD5)


def test_sign_type_in_the_message_is_signed_data():
    notify = cases.paid_notify(sign_type="MD5")
    good = rule.with_sign(notify, cases.KEY)
    without_sign_type = {k: v for k, v in notify.items() if k != "sign_type"}
    stripped = {**notify, "sign": rule.sign_md5(without_sign_type, cases.KEY)}

    verify(good, KEY, HMAC)
    with pytest.raises(SignatureInvalid):
        verify(stripped, KEY, MD5)


def test_an_hmac_notify_without_sign_type_verifies_for_an_hmac_merchant():
    message = rule.with_sign(cases.paid_notify(), cases.KEY, "HMAC-SHA256")

    verify(message, KEY, HMAC)


def test_an_md5_sign_without_sign_type_is_refused_by_an_hmac_merchant():
    # Accepting both digests would let a forger choose the weaker one.
    message = rule.with_sign(cases.paid_notify(), cases.KEY, "MD5")

    result = check_signature(message, KEY, HMAC)

    assert not result.valid
    assert "64 hex digits" in result.reason


@pytest.mark.parametrize("bad", ["", "ABC", "0" * 40, "x" * 64])
def test_a_sign_of_the_wrong_shape_is_refused(bad):
    message = {**cases.paid_notify(), "sign": bad}

    with pytest.raises(SignatureInvalid):
        verify(message, KEY, MD5)


def test_a_message_without_sign_is_refused():
    with pytest.raises(SignatureInvalid, match="no sign"):
        verify(cases.paid_notify(), KEY, MD5)


def test_an_unknown_sign_type_is_refused():
    notify = cases.paid_notify(sign_type="SHA1")
    message = rule.with_sign(notify, cases.KEY)

    with pytest.raises(SignatureInvalid, match="unknown sign_type"):
        verify(message, KEY, MD5)


def test_a_lower_case_sign_is_refused():
    message = rule.with_sign(cases.paid_notify(), cases.KEY)
    message["sign"] = message["sign"].lower()

    with pytest.raises(SignatureInvalid):
        verify(message, KEY, MD5)


def test_a_message_signed_with_another_key_is_refused():
    message = rule.with_sign(cases.paid_notify(), cases.WRONG_KEY)

    with pytest.raises(SignatureInvalid, match="does not match"):
        verify(message, KEY, MD5)


def test_the_api_key_never_shows_in_repr_str_or_format():
    key = ApiKey(cases.KEY)

    for text in (repr(key), str(key), f"{key}", f"{[key]}"):
        assert cases.KEY not in text


names = st.text(
    alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd")),
    min_size=1,
    max_size=12,
).filter(lambda name: name != "sign")
values = st.text(max_size=30)
messages = st.dictionaries(names, values, min_size=1, max_size=12)


@given(messages, st.sampled_from(list(SignType)))
def test_what_is_signed_verifies(fields, sign_type):
    message = signed(fields, KEY, sign_type)

    verify(message, KEY, sign_type)


@given(messages, st.sampled_from(list(SignType)), st.data())
def test_changing_adding_or_removing_a_field_breaks_the_signature(
    fields, sign_type, data
):
    message = signed(fields, KEY, sign_type)
    payload = [name for name in message if name != "sign"]
    action = data.draw(st.sampled_from(["change", "add", "remove"]))
    if action == "change" and payload:
        name = data.draw(st.sampled_from(payload))
        message[name] = message[name] + data.draw(st.text(min_size=1))
    elif action == "remove" and payload:
        del message[data.draw(st.sampled_from(payload))]
    else:
        name = data.draw(names.filter(lambda n: n not in message))
        message[name] = data.draw(st.text(min_size=1))

    with pytest.raises(SignatureInvalid):
        verify(message, KEY, sign_type)


@given(messages)
def test_the_signer_agrees_with_the_rule_written_independently(fields):
    assert sign(fields, KEY, MD5) == rule.sign_md5(fields, cases.KEY)
    assert sign(fields, KEY, HMAC) == rule.sign_hmac(fields, cases.KEY)
