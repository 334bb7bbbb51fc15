"""The one fidelity rule (core.fidelity): what every layer accepts and refuses."""

from __future__ import annotations

import math
from fractions import Fraction

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from core.api_backend import ApiBackend
from core.engine import retouch_image
from core.errors import FidelityError
from core.fidelity import REDO_CHOICES, check_fidelity, check_redo_choice
from core.formats import PreparedImage
from core.imaging import ImageLimits
from core.local_backend import LocalBackend
from core.pipeline import retouch_photo
from tests.upstream_fakes import FakeUpstream


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


# --- every layer that takes a fidelity applies this one rule ----------------------------------

REFUSED: tuple[object, ...] = (math.nan, math.inf, -math.inf, True, False, "0.3", None, 1.5, -0.1)


def rule_message(value: object) -> str:
    with pytest.raises(FidelityError) as caught:
        check_fidelity(value)
    return caught.value.message


class NeverCalled:
    """A backend the pipeline must not reach with a refused fidelity."""

    name = "never"

    async def retouch(self, image: PreparedImage, fidelity: float) -> bytes:
        raise AssertionError(f"the backend was reached with {fidelity!r}")

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("value", REFUSED, ids=repr)
async def test_the_pipeline_refuses_before_preparing_or_calling_the_backend(value: object) -> None:
    with pytest.raises(FidelityError) as caught:
        await retouch_photo(NeverCalled(), b"not even an image", value, ImageLimits())  # type: ignore[arg-type]
    assert caught.value.message == rule_message(value)


@pytest.mark.parametrize("value", REFUSED, ids=repr)
async def test_the_api_backend_refuses_before_any_request(
    value: object, client: httpx.AsyncClient, upstream: FakeUpstream, portrait_bytes: bytes
) -> None:
    backend = ApiBackend(client, base_url=upstream.base_url, api_key=SecretStr("sk-unused-key"))
    image = PreparedImage(portrait_bytes, "jpeg", 512, 512)
    with pytest.raises(FidelityError) as caught:
        await backend.retouch(image, value)  # type: ignore[arg-type]
    assert caught.value.message == rule_message(value)
    assert upstream.calls == []


@pytest.mark.parametrize("value", REFUSED, ids=repr)
async def test_the_local_backend_and_the_engine_refuse(
    value: object, portrait_bytes: bytes, portrait_rgb: np.ndarray
) -> None:
    backend = LocalBackend(threads=1)
    try:
        with pytest.raises(FidelityError) as caught:
            await backend.retouch(PreparedImage(portrait_bytes, "jpeg", 512, 512), value)  # type: ignore[arg-type]
    finally:
        await backend.aclose()
    assert caught.value.message == rule_message(value)
    with pytest.raises(FidelityError) as caught:
        retouch_image(portrait_rgb, value)  # type: ignore[arg-type]
    assert caught.value.message == rule_message(value)
