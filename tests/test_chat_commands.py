"""The shared chat-command rules on their own: redo values and command fidelities."""

from __future__ import annotations

import math

import pytest

from bots.chat_commands import read_fidelity, redo_choice
from core.errors import FidelityError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.1", 0.1),
        ("0.7", 0.7),
        ("0.5000", 0.5),
        ("0.3e0", 0.3),
        ("0.2", None),
        ("1", None),
        ("5", None),
        ("inf", None),
        ("-inf", None),
        ("nan", None),
        ("", None),
        ("0x1", None),
    ],
)
def test_only_offered_redo_values_are_taken(value: str, expected: float | None) -> None:
    assert redo_choice(value) == expected


@pytest.mark.parametrize("value", [math.nan, math.inf, -0.1, 1.5, "2", "high", "nan"])
def test_command_fidelities_follow_the_one_rule(value: float | str) -> None:
    with pytest.raises(FidelityError):
        read_fidelity(value)


def test_command_fidelities_from_text_and_numbers() -> None:
    assert read_fidelity("30%") == pytest.approx(0.3)
    assert read_fidelity(0.123456) == 0.1235
