"""The one fidelity rule (core.fidelity): what every layer accepts and refuses."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from core.errors import FidelityError
from core.fidelity import REDO_CHOICES, check_fidelity, check_redo_choice


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0.0), (1, 1.0), (0.3, 0.3), (0.123456, 0.1235), (Fraction(1, 4), 0.25)],
)
def test_numbers_in_range_are_taken(value: object, expected: float) -> None:
    assert check_fidelity(value) == expected


@pytest.mark.parametrize(
    "value",
    [True, False, "0.3", None, math.nan, math.inf, -math.inf, -0.01, 1.0001, 5, [0.3]],
)
def test_everything_else_is_a_fidelity_error(value: object) -> None:
    with pytest.raises(FidelityError):
        check_fidelity(value)


def test_buttons_carry_only_the_values_they_offer() -> None:
    assert [check_redo_choice(v) for v in REDO_CHOICES] == list(REDO_CHOICES)
    for forged in (0.2, 1.0, 5, math.inf, math.nan, "0.1"):
        with pytest.raises(FidelityError):
            check_redo_choice(forged)
