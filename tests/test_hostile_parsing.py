"""Hostile input, item 6: strict parsing. A number run into junk is a clear fidelity error
(never read as its first digits, 0.0, the strongest retouch); high-bit-depth images keep their
tones; button payloads take only the values the buttons offer."""

from __future__ import annotations

import pytest

from core.captions import parse_caption, parse_fidelity
from core.errors import FidelityError


@pytest.mark.parametrize(
    "text",
    [
        "fidelity 0;3",
        "fidelity 0·3",
        "fidelity 0 .3",
        "fidelity 0/3",
        "f 0:3",
        "f=0;3",
        "保真度 0·3",
        "0·3",
        "0/3",
        "0;3",
        "0 .3",
        "1e309",
    ],
)
def test_a_number_run_into_junk_is_a_fidelity_error(text: str) -> None:
    with pytest.raises(FidelityError) as caught:
        parse_caption(text)
    assert caught.value.user_fault


@pytest.mark.parametrize("text", ["1e309", "0;3 please", "0 .3", "0·3", "1e-3"])
def test_a_command_argument_run_into_junk_is_a_fidelity_error(text: str) -> None:
    with pytest.raises(FidelityError):
        parse_caption(text, after_command=True)
    with pytest.raises(FidelityError):
        parse_fidelity(text)


@pytest.mark.parametrize("text", ["inf", "nan", "-inf", "1e309", "0x1"])
def test_a_fidelity_given_alone_is_a_number_in_range_or_an_error(text: str) -> None:
    with pytest.raises(FidelityError):
        parse_fidelity(text)


@pytest.mark.parametrize(
    ("text", "fidelity"),
    [
        ("fidelity 0.3!", 0.3),
        ("fid 0,3", 0.3),
        ("f=.3", 0.3),
        ("fidelity: 30%", 0.3),
        ("保真度0.3美颜", 0.3),
    ],
)
def test_well_formed_values_still_read(text: str, fidelity: float) -> None:
    assert parse_caption(text) == pytest.approx(fidelity)


@pytest.mark.parametrize("text", ["2 kids at the beach", "me in 2019", "f you", "f 2nd"])
def test_text_with_numbers_that_mean_no_fidelity_is_ignored(text: str) -> None:
    assert parse_caption(text) is None


def test_a_command_argument_followed_by_words_reads_its_number() -> None:
    assert parse_caption("0.5 for 2 kids", after_command=True) == pytest.approx(0.5)
