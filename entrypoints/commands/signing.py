"""``wxpay sign`` and ``wxpay verify``: WeChat's signature tool, offline."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from adapters import xml_codec
from domain.signature import ApiKey
from domain.signature import SignType
from domain.signature import check_signature
from domain.signature import explain
from domain.signature import sign

KEY_VARIABLE = "WXPAY_API_KEY"


def register(subparsers: Any) -> None:
    signer = subparsers.add_parser(
        "sign",
        help="sign NAME=VALUE fields; the signature is the last line",
        description=(
            "Compute a WeChat Pay v2 signature. Empty values are left out"
            " and 'sign' is ignored, as WeChat's rule says."
        ),
    )
    _key_options(signer)
    signer.add_argument(
        "--explain",
        action="store_true",
        help="also print the string that was signed (key masked)",
    )
    signer.add_argument("fields", nargs="+", metavar="NAME=VALUE")
    signer.set_defaults(func=run_sign)

    verifier = subparsers.add_parser(
        "verify",
        help="check the signature of a WeChat XML message",
        description=(
            "Exit 0 when the signature holds, 1 when it does not, 2 when"
            " the message is not acceptable XML."
        ),
    )
    _key_options(verifier)
    verifier.add_argument(
        "file",
        nargs="?",
        help="the message; standard input when absent or '-'",
    )
    verifier.set_defaults(func=run_verify)


def _key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key",
        help=f"the merchant's API key (default: ${KEY_VARIABLE})",
    )
    parser.add_argument(
        "--sign-type",
        choices=[member.value for member in SignType],
        default=SignType.MD5.value,
        help="the digest (default MD5); for verify, used when the message"
        " has no sign_type",
    )


def _key(args: argparse.Namespace) -> ApiKey | None:
    secret = args.key or os.environ.get(KEY_VARIABLE, "")
    if not secret:
        print(f"wxpay: give --key or set {KEY_VARIABLE}", file=sys.stderr)
        return None
    return ApiKey(secret)


def run_sign(args: argparse.Namespace) -> int:
    key = _key(args)
    if key is None:
        return 2
    fields: dict[str, str] = {}
    for item in args.fields:
        name, equals, value = item.partition("=")
        if not equals or not name:
            print(f"wxpay: expected NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        fields[name] = value

    if args.explain:
        print(f"signed: {explain(fields)}")
    print(sign(fields, key, SignType(args.sign_type)))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    key = _key(args)
    if key is None:
        return 2
    if args.file in (None, "-"):
        body = sys.stdin.buffer.read()
    else:
        try:
            with open(args.file, "rb") as handle:
                body = handle.read()
        except OSError as error:
            print(f"wxpay: cannot read {args.file}: {error.strerror}")
            return 2

    try:
        fields = xml_codec.parse(body)
    except xml_codec.XmlRejected as error:
        print(f"not acceptable: {error}")
        return 2

    result = check_signature(fields, key, SignType(args.sign_type))
    if result.valid:
        assert result.sign_type is not None
        print(f"valid {result.sign_type.value} signature")
        return 0
    print(f"invalid: {result.reason}")
    print(f"expected: {result.expected or '-'}")
    print(f"received: {result.received or '-'}")
    print(f"signed: {result.explained}")
    return 1
