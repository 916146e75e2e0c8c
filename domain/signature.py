"""WeChat Pay v2 message signatures (the "安全规范" rule, chapter 4_3).

A message is a flat mapping of names to text. To sign it: keep every field
whose value is not the empty string, except ``sign`` itself; sort the names
by byte value; join ``name=value`` pairs with ``&``; append ``&key=API_KEY``;
digest with MD5, or with HMAC-SHA256 keyed by the API key; write upper-case
hex. ``sign_type`` is data like any other field and is signed when present.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

SIGN_FIELD = "sign"
SIGN_TYPE_FIELD = "sign_type"
API_KEY_LENGTH = 32


class SignType(enum.Enum):
    """The digests WeChat Pay v2 accepts, by their wire names."""

    MD5 = "MD5"
    HMAC_SHA256 = "HMAC-SHA256"

    @classmethod
    def from_wire(cls, text: str) -> SignType:
        """Map a ``sign_type`` value to a member.

        Raises:
            UnknownSignType: for any other spelling, including lower case.
        """
        for member in cls:
            if member.value == text:
                return member
        raise UnknownSignType(text)

    @property
    def hex_length(self) -> int:
        return 32 if self is SignType.MD5 else 64


class UnknownSignType(ValueError):
    """A ``sign_type`` that WeChat does not define."""

    def __init__(self, text: str) -> None:
        super().__init__(f"unknown sign_type {text!r}; use MD5 or HMAC-SHA256")


class ApiKey:
    """The merchant's v2 API key: a secret that never shows itself.

    ``repr``, ``str`` and formatting print a mask, so an API key that ends
    up in a log line or an exception message leaks nothing.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("an API key cannot be empty")
        self._secret = secret

    def reveal(self) -> str:
        """Return the key itself; only a digest should ever consume it."""
        return self._secret

    def __repr__(self) -> str:
        return "ApiKey('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ApiKey):
            return NotImplemented
        return hmac.compare_digest(self._secret.encode(), other._secret.encode())

    def __hash__(self) -> int:
        return hash(self._secret)

    def __len__(self) -> int:
        return len(self._secret)


MASK = "********"


def string_to_sign(fields: Mapping[str, str]) -> str:
    """Build the rule's ``stringA``: sorted non-empty fields except ``sign``.

    ``"0"`` is a value; only the empty string is left out. Values are used
    raw: no trimming, no URL-encoding, no XML-escaping.
    """
    names = sorted(
        (name for name, value in fields.items() if name != SIGN_FIELD and value),
        key=lambda name: name.encode("utf-8"),
    )
    return "&".join(f"{name}={fields[name]}" for name in names)


def explain(fields: Mapping[str, str]) -> str:
    """Show the exact text that is digested, with the key masked."""
    return f"{string_to_sign(fields)}&key={MASK}"


def sign(fields: Mapping[str, str], key: ApiKey, sign_type: SignType) -> str:
    """Compute the ``sign`` of ``fields`` under ``key`` and ``sign_type``."""
    message = f"{string_to_sign(fields)}&key={key.reveal()}".encode()
    if sign_type is SignType.MD5:
        # NOTE(signature): MD5 is WeChat's protocol, not our choice of hash.
        digest = hashlib.md5(message, usedforsecurity=False).hexdigest()
    else:
        secret = key.reveal().encode()
        digest = hmac.new(secret, message, hashlib.sha256).hexdigest()
    return digest.upper()


def signed(
    fields: Mapping[str, str], key: ApiKey, sign_type: SignType
) -> dict[str, str]:
    """Return a copy of ``fields`` with its ``sign`` set.

    Empty values are dropped from the copy as well, so what is sent is
    exactly what was signed and never carries ``attach=`` or ``"null"``.
    """
    message = {
        name: value for name, value in fields.items() if value and name != SIGN_FIELD
    }
    message[SIGN_FIELD] = sign(message, key, sign_type)
    return message


class SignatureInvalid(Exception):
    """A received message whose signature does not hold.

    ``reason`` says which rule failed; it names no secret and no sign
    value, so it is safe to log and to send back to the sender.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """What a verification found, for tools that must show their work."""

    valid: bool
    reason: str
    sign_type: SignType | None
    expected: str
    received: str
    explained: str


def check_signature(
    fields: Mapping[str, str], key: ApiKey, configured: SignType
) -> SignatureCheck:
    """Verify ``fields`` as received and report how.

    Every received field takes part, including ones this code does not
    know (``coupon_fee_0``, ``promotion_detail``, ...). The digest is the
    one named by the message's ``sign_type``; when that field is absent,
    as it is in WeChat's HMAC-SHA256 payment notifies, it is the digest
    the merchant is configured to sign with.

    SECURITY(signature): a declared ``sign_type`` is honoured, as the rule
    says (it is itself signed data, and either digest is keyed by the
    secret). With no ``sign_type`` only the configured digest is tried,
    never a guess from the sign's length: a merchant configured for
    HMAC-SHA256 refuses a 32-hex sign without ``sign_type``, because
    WeChat signs the notify of an order with the digest it was placed
    with, and ours are all placed with the configured one.
    """
    received = fields.get(SIGN_FIELD, "")
    explained = explain(fields)

    def fail(reason: str) -> SignatureCheck:
        return SignatureCheck(False, reason, None, "", received, explained)

    if not received:
        return fail("the message carries no sign")

    declared = fields.get(SIGN_TYPE_FIELD)
    if declared is None:
        sign_type = configured
    else:
        try:
            sign_type = SignType.from_wire(declared)
        except UnknownSignType as error:
            return fail(str(error))

    expected = sign(fields, key, sign_type)
    if len(received) != sign_type.hex_length:
        reason = (
            f"a {sign_type.value} sign has {sign_type.hex_length} hex digits,"
            f" this one has {len(received)}"
        )
    elif not hmac.compare_digest(expected.encode(), received.encode("utf-8")):
        reason = f"the {sign_type.value} sign does not match"
    else:
        reason = ""
    if reason:
        return SignatureCheck(False, reason, sign_type, expected, received, explained)
    return SignatureCheck(True, "", sign_type, expected, received, explained)


def verify(fields: Mapping[str, str], key: ApiKey, configured: SignType) -> None:
    """Raise unless ``fields`` carries a valid signature.

    Raises:
        SignatureInvalid: missing, empty, malformed or wrong ``sign``, or an
            unknown ``sign_type``.
    """
    result = check_signature(fields, key, configured)
    if not result.valid:
        raise SignatureInvalid(result.reason)
