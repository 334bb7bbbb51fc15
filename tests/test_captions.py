"""Caption parsing: every accepted form, the user errors, and properties over generated text.

(Commands and mentions are Telegram's: see test_telegram_addressing.py.)"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.captions import parse_caption, parse_fidelity
from core.errors import FidelityError


@pytest.mark.parametrize(
    ("text", "fidelity"),
    [
        ("fidelity 0.3", 0.3),
        ("fidelity=0.3", 0.3),
        ("Fidelity: 0.3", 0.3),
        ("FIDELITY 30%", 0.3),
        ("f 0.3", 0.3),
        ("f=.3", 0.3),
        ("F = 0.7", 0.7),
        ("fid 0,3", 0.3),
        ("0.3", 0.3),
        (".5", 0.5),
        ("1", 1.0),
        ("0", 0.0),
        ("30%", 0.3),
        ("30 %", 0.3),
        ("保真度 0.3", 0.3),
        ("保真度0.3", 0.3),
        ("保真度：0.3", 0.3),
        ("保真 0.5", 0.5),
        ("请用保真度0.2美颜", 0.2),
        ("０.３", 0.3),
        ("make me shine, fidelity .5 thanks", 0.5),
    ],
)
def test_accepted_forms(text: str, fidelity: float) -> None:
    assert parse_caption(text) == pytest.approx(fidelity)


def test_after_a_command_a_leading_number_counts() -> None:
    assert parse_caption("0.5 please", after_command=True) == pytest.approx(0.5)
    assert parse_caption("0.5 please") is None


@pytest.mark.parametrize(
    "text",
    [None, "", "   ", "nice pic", "2 kids at the beach", "f you", "/start 0.3", "me in 2019"],
)
def test_unrelated_text_is_ignored(text: str | None) -> None:
    assert parse_caption(text) is None


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("fidelity 7", "7"),
        ("fidelity=1.5", "1.5"),
        ("fidelity abc", "abc"),
        ("fidelity", ""),
        ("fidelity 0.3.4", "0.3.4"),
        ("7", "7"),
        ("-0.1", "-0.1"),
        ("150%", "150%"),
        ("保真度 3", "3"),
        ("f=9", "9"),
    ],
)
def test_bad_fidelity_is_a_user_error(text: str, shown: str) -> None:
    with pytest.raises(FidelityError) as caught:
        parse_caption(text)
    assert caught.value.user_fault
    assert caught.value.params["value"] == shown
    assert "0 and 1" in caught.value.message


def test_parse_fidelity_for_command_arguments() -> None:
    assert parse_fidelity("0.3") == pytest.approx(0.3)
    assert parse_fidelity(" 25% ") == pytest.approx(0.25)
    assert parse_fidelity("0.3 please") == pytest.approx(0.3)
    with pytest.raises(FidelityError):
        parse_fidelity("high")
    with pytest.raises(FidelityError):
        parse_fidelity("3")
    with pytest.raises(FidelityError):
        parse_fidelity("nan")


fidelities = st.integers(min_value=0, max_value=100).map(lambda n: n / 100)
formats = st.sampled_from(
    [
        "fidelity {v}",
        "fidelity={v}",
        "f {v}",
        "f={v}",
        "{v}",
        "保真度 {v}",
        "保真度{v}",
        "{p}%",
        "fidelity {p}%",
    ]
)
unrelated = st.text(
    alphabet=st.characters(blacklist_categories=("Nd", "No", "Cs"), blacklist_characters="%"),
    max_size=40,
).filter(lambda t: "fidelity" not in t.casefold() and "保真" not in t)


@given(value=fidelities, template=formats)
def test_every_form_round_trips(value: float, template: str) -> None:
    text = template.format(v=f"{value:g}", p=f"{value * 100:g}")
    assert parse_caption(text) == pytest.approx(value)


@given(value=fidelities, template=formats, before=unrelated)
def test_keyword_forms_survive_surrounding_text(value: float, template: str, before: str) -> None:
    if template == "{v}" or template.startswith("{p}"):
        return  # bare numbers must stand alone
    text = f"{before} {template.format(v=f'{value:g}', p=f'{value * 100:g}')}"
    assert parse_caption(text) == pytest.approx(value)


@given(text=unrelated)
def test_text_without_numbers_never_sets_fidelity(text: str) -> None:
    assert parse_caption(text) is None


@given(value=st.floats(min_value=1.0001, max_value=1e6, allow_nan=False))
def test_out_of_range_always_raises(value: float) -> None:
    with pytest.raises(FidelityError):
        parse_caption(f"fidelity {value:.4f}")


@given(text=st.text(max_size=60))
def test_arbitrary_text_gives_a_fidelity_none_or_a_fidelity_error(text: str) -> None:
    try:
        fidelity = parse_caption(text)
    except FidelityError:
        return
    assert fidelity is None or 0.0 <= fidelity <= 1.0
