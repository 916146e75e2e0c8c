"""Amounts of money, always an integer number of fen (1/100 CNY)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class InvalidAmount(ValueError):
    """An amount that is not a non-negative integer number of fen."""


@dataclass(frozen=True, order=True, slots=True)
class Fen:
    """A non-negative amount in fen.

    WeChat Pay v2 carries every amount as an integer number of fen. This
    value object refuses anything else at construction, so a float or a
    yuan string can never travel further than the edge that produced it.
    """

    value: int

    def __post_init__(self) -> None:
        _require_int(self.value)

    @classmethod
    def parse(cls, text: str) -> Fen:
        """Read an amount as WeChat writes it: ASCII digits, nothing else.

        Raises:
            InvalidAmount: for signs, decimals, spaces, leading zeros or
                non-ASCII digits.
        """
        digits_only = text.isascii() and text.isdigit()
        if not digits_only or (len(text) > 1 and text.startswith("0")):
            raise InvalidAmount(f"not an amount in fen: {text!r}")
        return cls(int(text))

    def __str__(self) -> str:
        return str(self.value)

    def __add__(self, other: Fen) -> Fen:
        return Fen(self.value + other.value)

    def __sub__(self, other: Fen) -> Fen:
        return Fen(self.value - other.value)

    def to_yuan(self) -> str:
        """Format for a person or a bill file: ``"1.05"`` for 105 fen.

        Only screens and WeChat's bill text ask for yuan; every other path
        keeps fen.
        """
        yuan, fen = divmod(self.value, 100)
        return f"{yuan}.{fen:02d}"


def _require_int(value: Any) -> None:
    # NOTE(money): bool is an int subclass; True fen is a bug, not 1 fen.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(f"an amount must be an int of fen, got {value!r}")
    if value < 0:
        raise InvalidAmount(f"an amount cannot be negative: {value}")
