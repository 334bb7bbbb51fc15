"""The one fidelity rule: CodeFormer's `codeformer_fidelity`, a number from 0 to 1.

Lower is a stronger retouch, 1.0 keeps the photo close to the input. Every layer that takes a
fidelity from outside (captions, commands, buttons, the API server, the backends) checks it here.
"""

from __future__ import annotations

import math
import numbers

from core.errors import FidelityError

MINIMUM = 0.0
MAXIMUM = 1.0
DEFAULT = 0.1
REDO_CHOICES: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7)
"""The values the redo buttons under a result offer (and the only ones a button may carry)."""
_DIGITS = 4


def check_fidelity(value: object) -> float:
    """`value` as a float in 0..1 rounded to 4 places, or `FidelityError`.

    Booleans, strings, NaN and infinities are refused: JSON's `true` is not a number, and
    `float("nan")` would pass a range check written the other way round.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise FidelityError("Fidelity must be a number between 0 and 1, like 0.3.", value=value)
    number = float(value)
    if math.isnan(number) or not MINIMUM <= number <= MAXIMUM:
        raise FidelityError(
            "Fidelity is out of range: use a number between 0 and 1, like 0.3 (or 30%).",
            value=value,
        )
    return round(number, _DIGITS)


def check_redo_choice(value: object) -> float:
    """A fidelity carried by a redo button: only the values the buttons offer are taken."""
    number = check_fidelity(value)
    if number not in REDO_CHOICES:
        raise FidelityError("That button offers no such fidelity.", value=value)
    return number
