"""WeChat's signature rule written out again, independently of ``domain``.

Tests compute every expected signature with these few lines, taken straight
from the rule's text, so a bug in the production signer cannot hide by
agreeing with itself.
"""

import hashlib
import hmac

from adapters import xml_codec


def rule_string(fields, key):
    kept = sorted((k, v) for k, v in fields.items() if v != "" and k != "sign")
    text = "&".join(f"{k}={v}" for k, v in kept)
    return f"{text}&key={key}".encode()


def sign_md5(fields, key):
    return hashlib.md5(rule_string(fields, key)).hexdigest().upper()


def sign_hmac(fields, key):
    message = rule_string(fields, key)
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest().upper()


def with_sign(fields, key, algorithm="MD5"):
    signer = sign_md5 if algorithm == "MD5" else sign_hmac
    return {**fields, "sign": signer(fields, key)}


def to_xml(fields):
    """Write a message the way WeChat does; plain text for digits."""
    parts = []
    for name, value in fields.items():
        if value.isdigit():
            parts.append(f"<{name}>{value}</{name}>")
        else:
            parts.append(f"<{name}><![CDATA[{value}]]></{name}>")
    return ("<xml>" + "".join(parts) + "</xml>").encode()


def parse(body):
    return xml_codec.parse(body)


def sign_md5_keeping_empties(fields, key):
    """The classic mistake of C03: empty values hashed as ``name=``."""
    kept = sorted((k, v) for k, v in fields.items() if k != "sign")
    text = "&".join(f"{k}={v}" for k, v in kept)
    return hashlib.md5(f"{text}&key={key}".encode()).hexdigest().upper()
