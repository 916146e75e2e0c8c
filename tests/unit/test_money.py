import pytest

from domain.money import Fen
from domain.money import InvalidAmount


@pytest.mark.parametrize("value", [1.0, 0.5, "100", None, True, -1, 1j])
def test_an_amount_is_a_non_negative_int_of_fen(value):
    with pytest.raises(InvalidAmount):
        Fen(value)


@pytest.mark.parametrize("text", ["", "1.00", "-1", " 1", "1 ", "01", "１", "1e3"])
def test_only_plain_digits_parse_as_fen(text):
    with pytest.raises(InvalidAmount):
        Fen.parse(text)


def test_wire_digits_parse_to_fen():
    assert Fen.parse("0") == Fen(0)
    assert Fen.parse("100") == Fen(100)


@pytest.mark.parametrize(
    ("fen", "yuan"),
    [(0, "0.00"), (1, "0.01"), (10, "0.10"), (105, "1.05"), (123456, "1234.56")],
)
def test_yuan_is_only_a_display_format(fen, yuan):
    assert Fen(fen).to_yuan() == yuan


def test_amounts_add_and_compare_in_fen():
    assert Fen(90) + Fen(10) == Fen(100)
    assert Fen(100) - Fen(1) < Fen(100)
    with pytest.raises(InvalidAmount):
        Fen(1) - Fen(2)
