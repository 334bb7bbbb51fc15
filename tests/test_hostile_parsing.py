"""Hostile input, item 6: strict parsing. A number run into junk is a clear fidelity error
(never read as its first digits, 0.0, the strongest retouch), in captions and in `/retouch` with
the real Telegram bot; high-bit-depth images keep their tones. (Button payloads take only the
values the buttons offer: `test_a_forged_redo_value_is_refused_and_costs_nothing` in
test_telegram_bot.py.)"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.captions import parse_caption, parse_fidelity
from core.errors import FidelityError
from core.formats import sniff_format
from core.imaging import ImageLimits, prepare_image
from core.local_backend import LocalBackend
from core.pipeline import retouch_photo
from tests.fake_clock import JumpClock
from tests.fake_telegram import FakeTelegram
from tests.test_telegram_bot import ALICE, GROUP, Harness
from tests.upstream_fakes import Echo, FakeUpstream


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


# --- high bit depths --------------------------------------------------------------------


def sixteen_bit_grey_png(rgb: np.ndarray) -> bytes:
    grey = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    buffer = io.BytesIO()
    Image.fromarray((grey * 257).round().astype(np.uint16)).save(buffer, "PNG")
    return buffer.getvalue()


def float_tiff(rgb: np.ndarray) -> bytes:
    grey = rgb.astype(np.float32).mean(axis=2) / 255
    buffer = io.BytesIO()
    Image.fromarray(grey, "F").save(buffer, "TIFF")
    return buffer.getvalue()


@pytest.mark.parametrize("encode", [sixteen_bit_grey_png, float_tiff], ids=["png-16", "tiff-f"])
def test_high_bit_depth_images_keep_their_tones(portrait_rgb: np.ndarray, encode: Any) -> None:
    data = encode(portrait_rgb)
    prepared = prepare_image(data, ImageLimits(max_pixels=100_000))  # shrunk in bands too
    with Image.open(io.BytesIO(prepared.data)) as image:
        grey = np.asarray(image.convert("L"), dtype=np.float64)
    original = portrait_rgb.astype(np.float64).mean()
    assert abs(grey.mean() - original) < 12  # clipped, it would be near 255
    assert grey.std() > 20


async def test_a_16_bit_grey_portrait_still_has_its_face(portrait_rgb: np.ndarray) -> None:
    backend = LocalBackend(threads=1)
    try:
        result = await retouch_photo(
            backend, sixteen_bit_grey_png(portrait_rgb), 0.3, ImageLimits()
        )
    finally:
        await backend.aclose()
    assert sniff_format(result) is not None


# --- end to end: the real Telegram bot ----------------------------------------------------


@pytest.fixture
async def telegram_bot(tmp_path: Path) -> AsyncIterator[Harness]:
    async with FakeTelegram(clock=JumpClock()) as tg, FakeUpstream(default=Echo()) as upstream:
        harness = Harness(tg, upstream, tmp_path)
        await harness.start()
        yield harness
        await harness.halt()


@pytest.mark.parametrize("argument", ["1e309", "0;3", "0 .3"])
async def test_retouch_with_a_malformed_fidelity_is_refused_and_costs_nothing(
    telegram_bot: Harness, portrait_bytes: bytes, argument: str
) -> None:
    photo = telegram_bot.tg.send_photo(GROUP, ALICE, portrait_bytes)
    telegram_bot.tg.send_text(GROUP, ALICE, f"/retouch {argument}", reply_to=photo)
    await telegram_bot.tg.wait_for("sendMessage", answered=True)
    [answer] = telegram_bot.texts(GROUP)
    assert "fidelity" in answer.lower() and "0 and 1" in answer
    assert telegram_bot.upstream.calls == []
