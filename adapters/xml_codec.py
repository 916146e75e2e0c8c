"""WeChat Pay's flat XML messages, read and written with lxml.

A WeChat message is ``<xml>`` with one child element per field, text only.
The reader accepts exactly that and refuses everything else *before* a
single field is handed out: a forged notify must not get as far as a field
lookup, let alone an entity expansion.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from lxml import etree

DEFAULT_MAX_BYTES = 64 * 1024
DEFAULT_MAX_FIELDS = 200

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_CDATA = re.compile(rb"<!\[CDATA\[.*?\]\]>", re.DOTALL)
_DECLARATION = re.compile(rb"<!(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
# XML 1.0 cannot carry these characters at all, escaped or not.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


class XmlRejected(ValueError):
    """A body that is not an acceptable WeChat message; says why."""

    code = "XML_FORMAT_ERROR"


class EmptyBody(XmlRejected):
    code = "POST_DATA_EMPTY"


class BodyTooLarge(XmlRejected):
    pass


class NotUtf8(XmlRejected):
    code = "NOT_UTF8"


class DoctypeForbidden(XmlRejected):
    pass


class ProcessingInstructionForbidden(XmlRejected):
    pass


class CommentForbidden(XmlRejected):
    pass


class TooManyElements(XmlRejected):
    pass


class DuplicateElement(XmlRejected):
    pass


class NestedElement(XmlRejected):
    pass


class WrongRoot(XmlRejected):
    pass


class AttributeForbidden(XmlRejected):
    pass


class MalformedXml(XmlRejected):
    pass


@dataclass(frozen=True, slots=True)
class XmlLimits:
    """How much a single message may hold."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_fields: int = DEFAULT_MAX_FIELDS


def _parser() -> etree.XMLParser:
    # SECURITY(xml): no DTD is loaded, no entity is resolved, nothing is
    # fetched, and libxml2's own size guards stay on (huge_tree=False).
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_blank_text=False,
        strip_cdata=True,
        recover=False,
    )


def parse(body: bytes, limits: XmlLimits | None = None) -> dict[str, str]:
    """Read one WeChat message into an ordered mapping of str to str.

    Plain text and CDATA give the same value; values are not trimmed.

    Raises:
        XmlRejected: a subclass naming the first rule the body breaks.
    """
    limits = limits or XmlLimits()
    if not body or not body.strip():
        raise EmptyBody("the body is empty")
    if len(body) > limits.max_bytes:
        raise BodyTooLarge(
            f"the body has {len(body)} bytes, the limit is {limits.max_bytes}"
        )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise NotUtf8(f"the body is not UTF-8 (byte {error.start})") from None

    # SECURITY(xml): a DTD is refused before libxml2 sees it, so no entity
    # is ever declared, let alone expanded. Outside CDATA the marker has no
    # other legal use.
    if _DECLARATION.search(_CDATA.sub(b"", body)):
        raise DoctypeForbidden("a DOCTYPE or entity declaration is not allowed")

    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as error:
        raise MalformedXml(f"not well-formed XML: {error.msg}") from None
    except ValueError as error:
        raise MalformedXml(f"not well-formed XML: {error}") from None

    _check_document(root)
    return _read_fields(root, limits)


def _check_document(root: etree._Element) -> None:
    info = root.getroottree().docinfo
    if info.internalDTD is not None or info.externalDTD is not None:
        raise DoctypeForbidden("a DOCTYPE or entity declaration is not allowed")
    declared = (info.encoding or "UTF-8").upper().replace("_", "-")
    if declared not in ("UTF-8", "UTF8"):
        raise NotUtf8(f"the body declares encoding {info.encoding!r}")

    for sibling in (
        *root.itersiblings(preceding=True),
        *root.itersiblings(),
    ):
        _refuse_special(sibling)
    if root.tag != "xml":
        raise WrongRoot(f"the root element is <{root.tag}>, not <xml>")
    if root.attrib:
        raise AttributeForbidden("the root element carries attributes")
    if (root.text or "").strip():
        raise MalformedXml("the root element holds text outside any field")


def _refuse_special(node: etree._Element) -> None:
    if isinstance(node, etree._ProcessingInstruction):
        raise ProcessingInstructionForbidden("processing instructions are not allowed")
    if isinstance(node, etree._Comment):
        raise CommentForbidden("comments are not allowed")
    if isinstance(node, etree._Entity):
        raise DoctypeForbidden("entity references are not allowed")


def _read_fields(root: etree._Element, limits: XmlLimits) -> dict[str, str]:
    children = list(root)
    if len(children) > limits.max_fields:
        raise TooManyElements(
            f"{len(children)} elements, the limit is {limits.max_fields}"
        )

    fields: dict[str, str] = {}
    for child in children:
        _refuse_special(child)
        name = child.tag
        if not isinstance(name, str):
            raise MalformedXml("an unexpected node in the message")
        if (child.tail or "").strip():
            raise MalformedXml("text between fields is not allowed")
        if child.attrib:
            raise AttributeForbidden(f"<{name}> carries attributes")
        if len(child):
            raise NestedElement(f"<{name}> contains another element")
        if name in fields:
            raise DuplicateElement(f"<{name}> appears more than once")
        fields[name] = child.text or ""
    return fields


def write(fields: Mapping[str, str]) -> bytes:
    """Write a flat WeChat message as UTF-8, every value in CDATA.

    A value may hold any text XML 1.0 can carry, ``]]>`` and ``\\r``
    included; it reads back unchanged.

    Raises:
        ValueError: a field name that is not an XML name, or a value with a
            character XML cannot carry.
    """
    parts = ["<xml>"]
    for name, value in fields.items():
        if not _NAME.match(name) or name.lower().startswith("xml"):
            raise ValueError(f"not a usable field name: {name!r}")
        if _NOT_XML.search(value):
            raise ValueError(f"field {name} holds a character XML cannot carry")
        parts.append(f"<{name}>{_cdata(value)}</{name}>")
    parts.append("</xml>")
    return "".join(parts).encode("utf-8")


def _cdata(value: str) -> str:
    # NOTE(xml): "]]>" would end the section early, so it is split across
    # two sections; a carriage return cannot survive inside CDATA (parsers
    # turn it into a newline), so it is written as a character reference.
    sections = []
    for line in value.split("\r"):
        safe = line.replace("]]>", "]]]]><![CDATA[>")
        sections.append(f"<![CDATA[{safe}]]>")
    return "&#13;".join(sections)
