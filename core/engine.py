"""The embedded retouch engine: finds faces and smooths their skin, on numpy and OpenCV alone.

All work happens in a crop around each face; masks and filters are computed with the face scaled
to a fixed width and their sizes are fractions of the face, so the look is the same at 0.3 MP and
at 12 MP and a large photo costs little more than a small one.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from core.errors import BackendError, NoFaceError
from core.fidelity import check_fidelity

RGBImage = npt.NDArray[np.uint8]
FloatImage = npt.NDArray[np.float32]

# Detection.
_DETECT_SIDE = 640  # faces are found on a grey copy whose longest side is at most this
_MIN_FACE = 0.05  # smallest face searched for, as a share of the image's shorter side
_COARSE_SIDE = 320  # the first, cheap pass: faces of _WINDOW px here, ~10% of the shorter side
_WINDOW = 24  # the face cascade's window: it finds no smaller face

# Every length below is a share of the face width; filtering runs with the face this wide.
_WORK_FACE = 256
# Smoothing: a self-guided filter; detail whose contrast (0..1) is well under EPS is smoothed.
_SMOOTH_RADIUS = 0.035
_SMOOTH_EPS = 0.05
_SMOOTH_MAX = 0.9  # share of the skin texture replaced at fidelity 0; the rest stays
_FINE_KEEP = 0.5  # share of the texture finer than the work scale (pores at 12 MP) kept
# Tone: mid-tones lifted by LIFT * Y * (1 - Y); this share of colour blotches evened out.
_LIFT = 0.15
_EVEN = 0.5
_TONE_SIGMA = 0.06
# Hair: pixels darker than DARK_LOW..DARK_HIGH of their surroundings are strands (or lashes,
# creases); where their density passes DENSITY_LOW..DENSITY_HIGH, it is hair, not skin.
_LOCAL_SIGMA = 0.05
_DARK_LOW = 0.6
_DARK_HIGH = 0.8
_DENSITY_SIGMA = 0.04
_DENSITY_LOW = 0.06
_DENSITY_HIGH = 0.16


@dataclass(frozen=True)
class FaceBox:
    """A face's bounding box in pixels of the image it was found in."""

    x: int
    y: int
    w: int
    h: int


def _f32(image: Any) -> FloatImage:
    """An OpenCV result typed as the float32 array it is (no copy when it already is one)."""
    return np.asarray(image, dtype=np.float32)


# --- detection --------------------------------------------------------------------------------


@dataclass
class _Cascades:
    face: cv2.CascadeClassifier
    check: cv2.CascadeClassifier  # a second opinion on each face, to drop false hits
    eye: cv2.CascadeClassifier


# A CascadeClassifier keeps per-call buffers, so one instance must not run in two threads at once:
# instances are loaded lazily, lent to one caller at a time and kept for the next.
_POOL: queue.SimpleQueue[_Cascades] = queue.SimpleQueue()


def _load_cascade(name: str) -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / name  # type: ignore[attr-defined]
    classifier = cv2.CascadeClassifier(str(path))
    if classifier.empty():
        raise BackendError(
            f"OpenCV's Haar cascade {name} is missing: install opencv-python-headless 4.x"
        )
    return classifier


@contextmanager
def _cascades() -> Iterator[_Cascades]:
    try:
        cascades = _POOL.get_nowait()
    except queue.Empty:
        cascades = _Cascades(
            face=_load_cascade("haarcascade_frontalface_default.xml"),
            check=_load_cascade("haarcascade_frontalface_alt2.xml"),
            eye=_load_cascade("haarcascade_eye.xml"),
        )
    try:
        yield cascades
    finally:
        _POOL.put(cascades)


def _check_rgb(rgb: npt.NDArray[Any]) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 RGB array, got {rgb.dtype} {rgb.shape}")


def detect_faces(rgb: RGBImage) -> list[FaceBox]:
    """Frontal faces in an RGB image, largest first; found on a small grey copy to stay cheap.

    The cascade spends most of its time sliding its smallest windows over the whole copy, and a
    portrait's face is large. So faces are first looked for on a copy half the size (a quarter
    of the cost; it sees faces from ~10% of the shorter side up), then the full copy is searched
    only for faces down to 70% of the smallest one found: the boxes are the ones a full search
    gives, at about half its cost. Only when the first look finds no face is the full copy
    searched down to faces of `_MIN_FACE` of its shorter side.
    """
    _check_rgb(rgb)
    height, width = rgb.shape[:2]
    scale = min(1.0, _DETECT_SIDE / max(height, width))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    search = np.asarray(cv2.equalizeHist(grey), dtype=np.uint8)
    with _cascades() as cascades:
        if max(search.shape) >= 1.5 * _COARSE_SIDE:
            factor = _COARSE_SIDE / max(search.shape)
            coarse_size = (
                max(1, round(search.shape[1] * factor)),
                max(1, round(search.shape[0] * factor)),
            )
            coarse = np.asarray(
                cv2.resize(search, coarse_size, interpolation=cv2.INTER_AREA), dtype=np.uint8
            )
            hits = [
                hit
                for hit in _find(cascades.face, coarse, _WINDOW)
                if _confirmed(coarse, hit, cascades.check)
            ]
            if hits:
                smallest = min(int(hit[2]) for hit in hits) / factor
                found = _find(cascades.face, search, max(_WINDOW, round(smallest * 0.7)))
                kept = _keep(rgb, search, found, scale, cascades.check)
                if kept:
                    return kept
        min_side = max(_WINDOW, round(min(search.shape) * _MIN_FACE))
        return _keep(rgb, search, _find(cascades.face, search, min_side), scale, cascades.check)


def _find(cascade: cv2.CascadeClassifier, grey: npt.NDArray[np.uint8], min_side: int) -> list[Any]:
    """The face cascade's hits (x, y, w, h) of at least `min_side` pixels in `grey`."""
    return list(
        cascade.detectMultiScale(
            grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side)
        )
    )


def _keep(
    rgb: RGBImage,
    search: npt.NDArray[np.uint8],
    found: list[Any],
    scale: float,
    check: cv2.CascadeClassifier,
) -> list[FaceBox]:
    """The hits (in `search` pixels) that are confirmed, skin-coloured and not nested, in `rgb`
    pixels, largest first."""
    confirmed = [f for f in found if _confirmed(search, f, check)]
    boxes = [
        FaceBox(round(x / scale), round(y / scale), round(w / scale), round(h / scale))
        for x, y, w, h in confirmed
    ]
    boxes.sort(key=lambda box: box.w * box.h, reverse=True)
    kept: list[FaceBox] = []
    for box in boxes:
        cx, cy = box.x + box.w / 2, box.y + box.h / 2
        nested = any(k.x <= cx <= k.x + k.w and k.y <= cy <= k.y + k.h for k in kept)
        if not nested and _skin_coloured(rgb, box):
            kept.append(box)
    return kept


def _confirmed(grey: npt.NDArray[np.uint8], found: Any, check: cv2.CascadeClassifier) -> bool:
    """Whether a second cascade also sees a face of about that size there.

    The two cascades rarely make the same mistake, and searching only a crop costs little.
    """
    x, y, w, h = (int(v) for v in found)
    pad = w // 4
    crop = grey[max(0, y - pad) : y + h + pad, max(0, x - pad) : x + w + pad]
    hits = check.detectMultiScale(
        crop,
        scaleFactor=1.1,
        minNeighbors=3,
        minSize=(w * 7 // 10, h * 7 // 10),
        maxSize=(w * 14 // 10, h * 14 // 10),
    )
    return len(hits) > 0


def _skin_coloured(rgb: RGBImage, box: FaceBox) -> bool:
    """Whether the middle of a detection has a skin tone, or no colour at all (a grey photo).

    Cheap insurance against a cascade hit on a flag or a patterned shirt, which we would blur.
    """
    step = max(1, box.w // 32)
    centre = rgb[
        box.y + box.h * 4 // 10 : box.y + box.h * 3 // 4 : step,
        box.x + box.w // 4 : box.x + box.w * 3 // 4 : step,
    ]
    mean = _f32(centre.reshape(-1, 3).mean(axis=0)).reshape(1, 1, 3) / np.float32(255)
    ycc = _f32(cv2.cvtColor(mean, cv2.COLOR_RGB2YCrCb))[0, 0] * 255
    cr, cb = float(ycc[1]), float(ycc[2])
    colourless = abs(cr - 128) < 6 and abs(cb - 128) < 6
    return colourless or (128 <= cr <= 185 and 70 <= cb <= 135)


# --- retouching -------------------------------------------------------------------------------


def retouch_image(rgb: RGBImage, fidelity: float) -> RGBImage:
    """A copy of `rgb` with every face's skin smoothed and evened; strength is 1 - fidelity.

    Raises `NoFaceError` when no face is found (at any fidelity, so the answer is consistent).
    """
    _check_rgb(rgb)
    fidelity = check_fidelity(fidelity)
    faces = detect_faces(rgb)
    if not faces:
        raise NoFaceError("No face found in the photo")
    out = rgb.copy()
    strength = 1.0 - fidelity
    if strength > 0.0:
        for face in faces:
            _retouch_face(out, face, strength)
    return out


def _retouch_face(out: RGBImage, face: FaceBox, strength: float) -> None:
    """Retouch one face in place, in a crop wide enough for its mask to fade to zero inside it."""
    height, width = out.shape[:2]
    x0, x1 = max(0, face.x - face.w // 2), min(width, face.x + face.w * 3 // 2)
    y0, y1 = max(0, face.y - face.h * 6 // 10), min(height, face.y + face.h * 16 // 10)
    crop = out[y0:y1, x0:x1]
    full = _f32(crop) / np.float32(255)
    size = (full.shape[1], full.shape[0])

    scale = min(1.0, _WORK_FACE / face.w)
    small = full
    if scale < 1.0:
        small_size = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        small = _f32(cv2.resize(full, small_size, interpolation=cv2.INTER_AREA))
    box = FaceBox(
        round((face.x - x0) * scale),
        round((face.y - y0) * scale),
        round(face.w * scale),
        round(face.h * scale),
    )

    mask = _skin_mask(small, box) * np.float32(strength * _SMOOTH_MAX)
    gain, offset = _smoothing_coefficients(small, box)
    offset += _tone_offset(small, box)
    if scale < 1.0:
        mask = _f32(cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR))
        gain = _f32(cv2.resize(gain, size, interpolation=cv2.INTER_LINEAR))
        offset = _f32(cv2.resize(offset, size, interpolation=cv2.INTER_LINEAR))
        # Texture too fine to exist at the work scale (pores in a 12 MP photo) is partly kept,
        # so a large photo does not come out plastic.
        fine = full - _f32(cv2.resize(small, size, interpolation=cv2.INTER_LINEAR))
        offset += (np.float32(1) - gain) * fine * np.float32(_FINE_KEEP)

    retouched = gain * full + offset
    delta = (retouched - full) * (mask * np.float32(255))[:, :, None]
    result = _f32(crop) + delta + np.float32(0.5)
    np.clip(result, 0, 255, out=result)
    out[y0:y1, x0:x1] = result.astype(np.uint8)


def _box(image: FloatImage, radius: int) -> FloatImage:
    side = 2 * radius + 1
    return _f32(cv2.boxFilter(image, -1, (side, side), borderType=cv2.BORDER_REFLECT))


def _smoothing_coefficients(small: FloatImage, box: FaceBox) -> tuple[FloatImage, FloatImage]:
    """Self-guided filter coefficients (q = a*I + b): flat skin is averaged, real edges are kept.

    Coefficients rather than the filtered image, so they can be upsampled and applied to the
    full-resolution crop (the fast guided filter) and edges stay sharp at any scale.
    """
    radius = max(1, round(box.w * _SMOOTH_RADIUS))
    mean = _box(small, radius)
    var = _box(small * small, radius) - mean * mean
    a = _f32(var / (var + np.float32(_SMOOTH_EPS**2)))
    b = mean - a * mean
    return _box(a, radius), _box(b, radius)


def _tone_offset(small: FloatImage, box: FaceBox) -> FloatImage:
    """A smooth RGB offset that lifts the skin's mid-tones and evens its colour towards its median.

    Only low frequencies move, so texture is untouched; pulling towards the face's own median
    chroma evens blotches and redness without adding a colour cast.
    """
    low = _f32(cv2.GaussianBlur(small, (0, 0), max(1.0, box.w * _TONE_SIGMA)))
    ycc = _f32(cv2.cvtColor(low, cv2.COLOR_RGB2YCrCb))
    median = _f32(np.median(_cheek_region(ycc, box).reshape(-1, 3), axis=0))
    luma = ycc[:, :, 0]
    d_y = np.float32(_LIFT) * luma * (np.float32(1) - luma)
    d_cr = (median[1] - ycc[:, :, 1]) * np.float32(_EVEN)
    d_cb = (median[2] - ycc[:, :, 2]) * np.float32(_EVEN)
    # YCrCb offsets in RGB (the inverse of OpenCV's conversion matrix)
    return np.dstack(
        (
            d_y + np.float32(1.403) * d_cr,
            d_y - np.float32(0.714) * d_cr - np.float32(0.344) * d_cb,
            d_y + np.float32(1.773) * d_cb,
        )
    )


def _cheek_region(image: FloatImage, box: FaceBox) -> FloatImage:
    """The part of a face box that is nearly always bare skin: cheeks and nose, under the eyes."""
    return image[
        box.y + box.h * 50 // 100 : box.y + box.h * 72 // 100,
        box.x + box.w * 18 // 100 : box.x + box.w * 82 // 100,
    ]


def _skin_mask(small: FloatImage, box: FaceBox) -> FloatImage:
    """How much to retouch each pixel (0..1): skin, inside the face oval, away from the features."""
    ycc = _f32(cv2.cvtColor(small, cv2.COLOR_RGB2YCrCb))
    luma = ycc[:, :, 0]
    # Skin colour is learnt from this face's cheeks, so it works for any skin tone and lighting.
    samples = _cheek_region(ycc, box).reshape(-1, 3)
    median = _f32(np.median(samples, axis=0))
    spread = np.clip(np.median(np.abs(samples - median), axis=0) * 1.4826, 0.012, 0.04)
    d_cr = (ycc[:, :, 1] - median[1]) / np.float32(spread[1])
    d_cb = (ycc[:, :, 2] - median[2]) / np.float32(spread[2])
    skin = np.clip((5.0 - np.sqrt(d_cr * d_cr + d_cb * d_cb)) / 2.5, 0.0, 1.0)
    # Very dark pixels (pupils, nostrils, dark hair) have no reliable colour.
    skin *= np.clip((luma - 0.25 * median[0]) / (0.2 * median[0]), 0.0, 1.0)
    # A pixel much darker than its surroundings alone may be a blemish, to be smoothed; many of
    # them together are a fringe of hair (or lashes and brows), to be left alone as a whole.
    local = _f32(cv2.GaussianBlur(luma, (0, 0), max(1.0, box.w * _LOCAL_SIGMA))) + 1e-3
    dark = _f32(np.clip((_DARK_HIGH - luma / local) / (_DARK_HIGH - _DARK_LOW), 0.0, 1.0))
    density = _f32(cv2.GaussianBlur(dark, (0, 0), max(1.0, box.w * _DENSITY_SIGMA)))
    skin *= np.clip((_DENSITY_HIGH - density) / (_DENSITY_HIGH - _DENSITY_LOW), 0.0, 1.0)
    skin = _f32(cv2.GaussianBlur(_f32(skin), (0, 0), max(0.7, box.w * 0.01)))

    oval = np.zeros(luma.shape, np.float32)
    centre = (box.x + box.w // 2, box.y + box.h * 55 // 100)
    cv2.ellipse(oval, centre, (box.w // 2, box.h * 7 // 10), 0, 0, 360, 1.0, -1)
    oval = _f32(cv2.GaussianBlur(oval, (0, 0), max(1.0, box.w * 0.06)))

    features = np.zeros(luma.shape, np.float32)
    eye_axes = (box.w * 17 // 100, box.h * 16 // 100)
    for ex, ey in _eye_centres(small, box):
        # the eye with its brow above it
        cv2.ellipse(features, (ex, ey - box.h * 6 // 100), eye_axes, 0, 0, 360, 1.0, -1)
    mouth = (box.x + box.w // 2, box.y + box.h * 83 // 100)
    cv2.ellipse(features, mouth, (box.w * 22 // 100, box.h * 11 // 100), 0, 0, 360, 1.0, -1)
    features = _f32(cv2.GaussianBlur(features, (0, 0), max(1.0, box.w * 0.035)))

    return skin * oval * (np.float32(1) - features)


def _eye_centres(small: FloatImage, box: FaceBox) -> list[tuple[int, int]]:
    """Both eye centres: the eye cascade's if it finds a plausible pair, else typical positions."""
    default = [
        (box.x + box.w * 30 // 100, box.y + box.h * 38 // 100),
        (box.x + box.w * 70 // 100, box.y + box.h * 38 // 100),
    ]
    top = small[box.y : box.y + box.h * 6 // 10, box.x : box.x + box.w]
    if top.size == 0:
        return default
    grey = cv2.cvtColor(np.clip(top * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    min_side = max(8, box.w * 12 // 100)
    max_side = max(min_side + 1, box.w * 35 // 100)
    with _cascades() as cascades:
        found = cascades.eye.detectMultiScale(
            grey,
            scaleFactor=1.1,
            minNeighbors=4,
            minSize=(min_side, min_side),
            maxSize=(max_side, max_side),
        )
    centres = [(int(x + w // 2), int(y + h // 2)) for x, y, w, h in found]
    lefts = [c for c in centres if c[0] < box.w // 2]
    rights = [c for c in centres if c[0] >= box.w // 2]
    if not lefts or not rights:
        return default
    # the most level pair, so a stray hit on a nostril or a brow does not win
    (lx, ly), (rx, ry) = min(
        ((left, right) for left in lefts for right in rights),
        key=lambda pair: abs(pair[0][1] - pair[1][1]),
    )
    if abs(ly - ry) > box.h * 0.15 or rx - lx < box.w * 0.25:
        return default
    return [(box.x + lx, box.y + ly), (box.x + rx, box.y + ry)]
