"""The pure centre of wxpay-native: money, signatures, orders and their rules.

Nothing in this package performs I/O or imports from ``adapters`` or
``entrypoints``; those depend on it, never the other way round.
"""
