"""The embedded retouch engine on the sample portrait: where it retouches, how much, what not."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple

import numpy as np
import pytest
from PIL import Image

from core import engine
from core.engine import FaceBox, detect_faces, retouch_image
from core.errors import FidelityError, NoFaceError

# The sample's one face, as the brief and the photo say: about x=177, y=66, 95 px square.
FACE = FaceBox(177, 66, 95, 95)


def region(box: FaceBox, left: float, top: float, right: float, bottom: float) -> tuple[slice, ...]:
    """The part of `box` between the given fractions of its width and height."""
    return (
        slice(box.y + round(box.h * top), box.y + round(box.h * bottom)),
        slice(box.x + round(box.w * left), box.x + round(box.w * right)),
    )


def change(before: np.ndarray, after: np.ndarray, where: tuple[slice, ...]) -> float:
    return float(np.abs(after[where].astype(int) - before[where].astype(int)).mean())


@pytest.fixture(scope="module")
def retouched(portrait_rgb: np.ndarray) -> dict[float, np.ndarray]:
    return {f: retouch_image(portrait_rgb, f) for f in (0.1, 0.5, 0.9, 1.0)}


def near(box: FaceBox, expected: FaceBox, tolerance: float) -> bool:
    pairs = zip(astuple(box), astuple(expected), strict=True)
    return all(abs(a - b) <= tolerance * expected.w for a, b in pairs)


def test_finds_the_one_face_in_the_sample(portrait_rgb: np.ndarray) -> None:
    [face] = detect_faces(portrait_rgb)
    assert near(face, FACE, 0.1)


@pytest.mark.parametrize("size", [(512, 512), (1024, 512), (1280, 960), (2048, 2048)])
def test_the_quick_first_look_finds_the_boxes_a_full_search_finds(
    portrait_rgb: np.ndarray, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    if size == (1024, 512):
        rgb = np.ascontiguousarray(np.hstack([portrait_rgb, portrait_rgb]))
    else:
        rgb = np.asarray(Image.fromarray(portrait_rgb).resize(size, Image.Resampling.LANCZOS))
    quick = sorted(detect_faces(rgb), key=lambda f: f.x)
    monkeypatch.setattr(engine, "_COARSE_SIDE", 10**6)  # the full search only
    full = sorted(detect_faces(rgb), key=lambda f: f.x)
    assert len(quick) == len(full) >= 1
    for a, b in zip(quick, full, strict=True):
        assert near(a, b, 0.06)


def test_finds_a_face_in_a_large_photo_at_its_scale(portrait_rgb: np.ndarray) -> None:
    large = np.asarray(Image.fromarray(portrait_rgb).resize((2048, 2048), Image.Resampling.LANCZOS))
    [face] = detect_faces(large)
    assert near(face, FaceBox(FACE.x * 4, FACE.y * 4, FACE.w * 4, FACE.h * 4), 0.1)


def test_output_has_the_input_shape_and_type(
    portrait_rgb: np.ndarray, retouched: dict[float, np.ndarray]
) -> None:
    for result in retouched.values():
        assert result.shape == portrait_rgb.shape
        assert result.dtype == np.uint8
        assert result is not portrait_rgb and result.flags.writeable


def test_retouches_the_skin_and_leaves_the_rest(
    portrait_rgb: np.ndarray, retouched: dict[float, np.ndarray]
) -> None:
    after = retouched[0.1]
    cheeks = region(FACE, 0.15, 0.5, 0.85, 0.7)
    assert change(portrait_rgb, after, cheeks) > 2.0
    # background, flag, suit and helmet, all well away from the face
    for far in (np.s_[:60, :120], np.s_[:60, 400:], np.s_[250:, :150], np.s_[300:, 300:]):
        assert np.abs(after[far].astype(int) - portrait_rgb[far].astype(int)).max() <= 1


def test_skin_comes_out_smoother(
    portrait_rgb: np.ndarray, retouched: dict[float, np.ndarray]
) -> None:
    def roughness(image: np.ndarray) -> float:
        grey = image[region(FACE, 0.15, 0.5, 0.85, 0.7)].astype(float).mean(axis=2)
        return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())

    assert roughness(retouched[0.1]) < 0.75 * roughness(portrait_rgb)


def test_lower_fidelity_changes_the_face_more(
    portrait_rgb: np.ndarray, retouched: dict[float, np.ndarray]
) -> None:
    face = region(FACE, 0, 0, 1, 1)
    changes = [change(portrait_rgb, retouched[f], face) for f in (0.1, 0.5, 0.9)]
    assert changes[0] > changes[1] > changes[2] > 0


def test_fidelity_one_is_the_input(
    portrait_rgb: np.ndarray, retouched: dict[float, np.ndarray]
) -> None:
    assert np.array_equal(retouched[1.0], portrait_rgb)


def test_eyes_stay_sharper_than_the_cheeks(
    portrait_rgb: np.ndarray, retouched: dict[float, np.ndarray]
) -> None:
    after = retouched[0.1]
    eyes = change(portrait_rgb, after, region(FACE, 0.12, 0.28, 0.42, 0.45)) + change(
        portrait_rgb, after, region(FACE, 0.6, 0.3, 0.9, 0.47)
    )
    cheeks = change(portrait_rgb, after, region(FACE, 0.12, 0.55, 0.35, 0.72)) + change(
        portrait_rgb, after, region(FACE, 0.65, 0.55, 0.88, 0.72)
    )
    assert eyes < 0.5 * cheeks


def test_adds_no_colour_cast(portrait_rgb: np.ndarray, retouched: dict[float, np.ndarray]) -> None:
    cheeks = region(FACE, 0.15, 0.5, 0.85, 0.7)
    before = portrait_rgb[cheeks].reshape(-1, 3).astype(float).mean(axis=0)
    after = retouched[0.1][cheeks].reshape(-1, 3).astype(float).mean(axis=0)
    # brighter is fine; the balance between the channels may not move
    assert abs((after[0] - after[1]) - (before[0] - before[1])) < 2.5
    assert abs((after[1] - after[2]) - (before[1] - before[2])) < 2.5


def test_a_grey_photo_stays_grey(portrait_rgb: np.ndarray) -> None:
    grey = np.repeat(portrait_rgb.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    result = retouch_image(grey, 0.1).astype(int)
    assert np.abs(result[:, :, 0] - result[:, :, 1]).max() <= 1
    assert np.abs(result[:, :, 1] - result[:, :, 2]).max() <= 1
    assert change(grey, result.astype(np.uint8), region(FACE, 0.15, 0.5, 0.85, 0.7)) > 1.0


def test_looks_the_same_at_twice_the_size(portrait_rgb: np.ndarray) -> None:
    small = retouch_image(portrait_rgb, 0.1)
    large_in = np.asarray(
        Image.fromarray(portrait_rgb).resize((1024, 1024), Image.Resampling.LANCZOS)
    )
    large_out = retouch_image(large_in, 0.1)
    # back at the small size, the large result is close to the small one
    shrunk = np.asarray(Image.fromarray(large_out).resize((512, 512), Image.Resampling.LANCZOS))
    reference = np.asarray(Image.fromarray(large_in).resize((512, 512), Image.Resampling.LANCZOS))
    face = region(FACE, 0, 0, 1, 1)
    assert change(portrait_rgb, small, face) == pytest.approx(
        change(reference, shrunk, face), rel=0.35
    )


def test_both_faces_of_two_are_found_and_retouched(portrait_rgb: np.ndarray) -> None:
    pair = np.ascontiguousarray(np.hstack([portrait_rgb, portrait_rgb]))
    faces = sorted(detect_faces(pair), key=lambda f: f.x)
    assert len(faces) == 2
    assert near(faces[0], FACE, 0.1)
    assert near(faces[1], FaceBox(FACE.x + 512, FACE.y, FACE.w, FACE.h), 0.1)
    result = retouch_image(pair, 0.1)
    for face in faces:
        assert change(pair, result, region(face, 0.15, 0.5, 0.85, 0.7)) > 2.0


def test_no_face_is_a_clear_error(no_face_bytes: bytes) -> None:
    with Image.open(io.BytesIO(no_face_bytes)) as image:
        rgb = np.asarray(image.convert("RGB"))
    assert detect_faces(rgb) == []
    with pytest.raises(NoFaceError, match="No face found in the photo"):
        retouch_image(rgb, 0.1)
    with pytest.raises(NoFaceError):
        retouch_image(rgb, 1.0)


@pytest.mark.parametrize("fidelity", [-0.01, 1.01, float("nan")])
def test_fidelity_outside_zero_to_one_is_refused(portrait_rgb: np.ndarray, fidelity: float) -> None:
    with pytest.raises(FidelityError):
        retouch_image(portrait_rgb, fidelity)


@pytest.mark.parametrize(
    "array",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)],
)
def test_only_uint8_rgb_is_accepted(array: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        detect_faces(array)


def test_detection_is_safe_from_several_threads(portrait_rgb: np.ndarray) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(detect_faces, [portrait_rgb] * 8))
    assert all(result == results[0] and len(result) == 1 for result in results)
