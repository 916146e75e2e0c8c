import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters import xml_codec
from adapters.xml_codec import XmlLimits
from tests.support.hostile import EXTERNAL_DTD
from tests.support.hostile import XXE_FILE
from tests.support.hostile import billion_laughs


def test_plain_text_and_cdata_values_are_equal():
    body = b"<xml><a>1</a><b><![CDATA[1]]></b><c><![CDATA[]]></c><d/></xml>"

    assert xml_codec.parse(body) == {"a": "1", "b": "1", "c": "", "d": ""}


def test_fields_keep_their_order_and_raw_whitespace():
    fields = xml_codec.parse(b"<xml><z> x </z>\n  <a>y</a>\n</xml>")

    assert list(fields.items()) == [("z", " x "), ("a", "y")]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (XXE_FILE, xml_codec.DoctypeForbidden),
        (billion_laughs(), xml_codec.DoctypeForbidden),
        (EXTERNAL_DTD, xml_codec.DoctypeForbidden),
        (b"<xml><a>1</a><?php x?></xml>", xml_codec.ProcessingInstructionForbidden),
        (b"<?php x?><xml><a>1</a></xml>", xml_codec.ProcessingInstructionForbidden),
        (b"<xml><!-- c --><a>1</a></xml>", xml_codec.CommentForbidden),
        (
            b"<xml><total_fee>1</total_fee><total_fee>100</total_fee></xml>",
            xml_codec.DuplicateElement,
        ),
        (b"<xml><a><b>1</b></a></xml>", xml_codec.NestedElement),
        (b"<root><a>1</a></root>", xml_codec.WrongRoot),
        (b'<xml><a x="1">1</a></xml>', xml_codec.AttributeForbidden),
        (b"<xml>text<a>1</a></xml>", xml_codec.MalformedXml),
        (b"<xml><a>1</a>text</xml>", xml_codec.MalformedXml),
        (b"<xml><a>1</a>", xml_codec.MalformedXml),
        (b'{"a": 1}', xml_codec.MalformedXml),
        (b"<xml><a>&undefined;</a></xml>", xml_codec.MalformedXml),
        (b"", xml_codec.EmptyBody),
        (b"  \n", xml_codec.EmptyBody),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_hostile_or_malformed_bodies_are_refused_with_their_own_error(body, error):
    with pytest.raises(error):
        xml_codec.parse(body)


def test_an_external_entity_is_refused_before_any_file_is_read():
    with pytest.raises(xml_codec.DoctypeForbidden) as caught:
        xml_codec.parse(XXE_FILE)

    with open("/etc/hostname") as handle:
        hostname = handle.read().strip()
    assert hostname not in str(caught.value)


def test_entity_expansion_is_refused_quickly():
    started = time.process_time()

    with pytest.raises(xml_codec.DoctypeForbidden):
        xml_codec.parse(billion_laughs(levels=10, fanout=10))

    # NOTE(xml): a bound, not a timing target: expansion would take minutes.
    assert time.process_time() - started < 5


def test_a_body_over_the_limit_is_refused_unread():
    body = b"<xml><a>" + b"x" * (10 * 1024 * 1024) + b"</a></xml>"

    with pytest.raises(xml_codec.BodyTooLarge, match="65536"):
        xml_codec.parse(body)


def test_the_size_and_field_limits_are_configurable():
    body = b"<xml>" + b"".join(b"<f%d>1</f%d>" % (i, i) for i in range(11)) + b"</xml>"

    assert len(xml_codec.parse(body)) == 11
    with pytest.raises(xml_codec.TooManyElements):
        xml_codec.parse(body, XmlLimits(max_fields=10))
    with pytest.raises(xml_codec.BodyTooLarge):
        xml_codec.parse(body, XmlLimits(max_bytes=20))


def test_a_gbk_body_is_refused_as_not_utf8():
    body = "<xml><body>测试商品</body></xml>".encode("gbk")

    with pytest.raises(xml_codec.NotUtf8):
        xml_codec.parse(body)


def test_a_declared_non_utf8_encoding_is_refused():
    body = b'<?xml version="1.0" encoding="GBK"?><xml><a>1</a></xml>'

    with pytest.raises(xml_codec.NotUtf8):
        xml_codec.parse(body)


def test_chinese_utf8_text_is_read():
    body = "<xml><body><![CDATA[测试商品]]></body></xml>".encode()

    assert xml_codec.parse(body) == {"body": "测试商品"}


def test_the_writer_escapes_a_cdata_terminator():
    body = xml_codec.write({"attach": "a]]>b", "x": "<&>"})

    assert xml_codec.parse(body) == {"attach": "a]]>b", "x": "<&>"}


def test_the_writer_refuses_unusable_names_and_characters():
    with pytest.raises(ValueError):
        xml_codec.write({"a b": "1"})
    with pytest.raises(ValueError):
        xml_codec.write({"a": "\x00"})


xml_text = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c"
        "\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d"
        "\x1e\x1f\ufffe\uffff",
    )
)
field_names = st.from_regex(r"[a-w_][a-z0-9_]{0,15}", fullmatch=True)


@given(st.dictionaries(field_names, xml_text, max_size=15))
def test_what_is_written_reads_back_unchanged(fields):
    assert xml_codec.parse(xml_codec.write(fields)) == fields


@given(st.sampled_from(["]]>", "]]]]>", "测试", "\r\n", "]]>\r]]>", "中文]]>"]))
def test_tricky_values_read_back_unchanged(value):
    fields = {"body": value, "detail": value * 3}

    assert xml_codec.parse(xml_codec.write(fields)) == fields
