"""Whom a Telegram caption addresses (`/retouch@Bot`, mentions), and the fidelity in the rest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bots.telegram.addressing import Address, address
from core.errors import FidelityError

ME = "RetouchBot"


@pytest.mark.parametrize(
    ("text", "fidelity"),
    [
        ("/retouch 0.3", 0.3),
        ("/retouch@RetouchBot 0.3", 0.3),
        ("/RETOUCH 45%", 0.45),
        ("/retouch 0.5 please", 0.5),
        ("@RetouchBot f=0.7", 0.7),
        ("@RetouchBot 0.3", 0.3),
        ("/retouch fidelity 0.2", 0.2),
        ("／retouch ０.３", 0.3),
        ("nice pic @RetouchBot", None),
        ("/start 0.3", None),
    ],
)
def test_fidelity_after_the_command_and_mentions(text: str, fidelity: float | None) -> None:
    assert address(text, ME).fidelity() == (None if fidelity is None else pytest.approx(fidelity))


def test_command_and_mentions() -> None:
    assert address("/retouch", ME) == Address(command=True)
    assert address("/retouch@retouchbot", ME).addressed
    other = address("/retouch@OtherBot 0.3", ME)
    assert other.other_bot and not other.addressed
    mention = address("look @RetouchBot", ME)
    assert mention.mentioned and mention.addressed and mention.fidelity() is None
    assert address("look @retouchbot", "@RetouchBot").mentioned
    assert not address("look @SomeoneElse", ME).addressed
    assert not address("just a photo", ME).addressed
    assert not address(None, ME).addressed
    # A command without a known bot name is addressed to whoever receives it.
    assert address("/retouch@AnyBot").addressed


def test_a_bad_fidelity_after_the_command_is_a_user_error() -> None:
    with pytest.raises(FidelityError) as caught:
        address("/retouch 2", ME).fidelity()
    assert caught.value.params["value"] == "2"


fidelities = st.integers(min_value=0, max_value=100).map(lambda n: n / 100)


@given(
    value=fidelities,
    template=st.sampled_from(["/retouch {v}", "/retouch@RetouchBot {v}", "@RetouchBot {v}"]),
)
def test_every_addressed_form_round_trips(value: float, template: str) -> None:
    found = address(template.format(v=f"{value:g}"), ME)
    assert found.addressed
    assert found.fidelity() == pytest.approx(value)
