"""The ``wxpay`` command: one CLI for every tool the project ships."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module exposes ``register(subparsers)`` and sets ``func`` on its
# parsers; ``func(args)`` returns the exit status.
COMMAND_MODULES = (
    "entrypoints.commands.signing",
    "entrypoints.commands.service",
    "entrypoints.commands.database",
    "entrypoints.commands.catalogue",
    "entrypoints.commands.audit",
    "entrypoints.commands.config",
    "entrypoints.commands.reconcile",
    "simulator.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wxpay",
        description="WeChat Pay Native (QR-code) checkout: service and tools.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``wxpay``; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
