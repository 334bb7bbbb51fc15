"""Where each retouch step works, from the landmarks: skin, under-eyes, eyes and teeth.

The skin mask is the face oval without the eyes, brows, lips and nostrils, kept to pixels whose
colour matches the face's own cheeks (so hair, a beard or glasses inside the oval stay out), and
feathered inside the oval so nothing beyond it changes. The colour match is made on a blurred
copy, where wrinkles, pores and freckles have melted into the skin around them: they are
retouched, not read as hair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from core.engine import mesh
from core.engine.arrays import FloatImage, f32
from core.engine.filters import blur
from core.engine.frame import Frame

# Shares of the face width.
_FEATHER = 0.02  # the skin mask's soft edge
_EYE_MARGIN = 0.045  # lashes, lids and make-up around the eye opening
_BROW_MARGIN = 0.04
_LIP_MARGIN = 0.035
_NOSTRIL_MARGIN = 0.025
_COLOUR_BLUR = 0.015  # wrinkles and pores vanish at this blur, a fringe of hair does not
_CHEEK_RADIUS = 0.06
# Colour match: distance in units of the cheeks' spread; at least these Lab spreads.
_SPREAD_L = 9.0
_SPREAD_AB = 3.5
_MATCH_FULL, _MATCH_NONE = 2.6, 4.0


@dataclass(frozen=True)
class Masks:
    """Weights (0..1) in the work frame for each retouch step."""

    skin: FloatImage
    under_eyes: FloatImage
    eyes: FloatImage
    teeth: FloatImage
    lips: FloatImage


def face_masks(small: FloatImage, frame: Frame) -> Masks:
    """The masks of one face, in the work frame `small` (RGB, 0..1) is in."""
    shape = (frame.height, frame.width)
    feather = frame.length(_FEATHER)
    oval = _polygon(shape, frame, mesh.FACE_OVAL)
    # shrink the oval by twice the feather, so the soft edge ends on the face's outline
    inside = f32(cv2.erode(oval, _disc(4 * feather)))
    features = np.maximum.reduce(
        [
            _polygon(shape, frame, mesh.RIGHT_EYE, frame.length(_EYE_MARGIN)),
            _polygon(shape, frame, mesh.LEFT_EYE, frame.length(_EYE_MARGIN)),
            _polygon(shape, frame, mesh.RIGHT_BROW, frame.length(_BROW_MARGIN)),
            _polygon(shape, frame, mesh.LEFT_BROW, frame.length(_BROW_MARGIN)),
            _polygon(shape, frame, mesh.OUTER_LIPS, frame.length(_LIP_MARGIN)),
            _polygon(shape, frame, mesh.NOSE_BASE, frame.length(_NOSTRIL_MARGIN)),
        ]
    )
    lab = f32(cv2.cvtColor(blur(small, frame.length(_COLOUR_BLUR)), cv2.COLOR_RGB2Lab))
    skin = inside * (np.float32(1) - features) * _skin_colour(lab, frame)
    skin = blur(skin, feather)
    return Masks(
        skin=skin,
        under_eyes=blur(_under_eyes(shape, frame), frame.length(0.03)) * skin,
        eyes=blur(
            np.maximum(
                _polygon(shape, frame, mesh.RIGHT_EYE), _polygon(shape, frame, mesh.LEFT_EYE)
            ),
            frame.length(0.006, 0.5),
        ),
        teeth=_teeth(small, _polygon(shape, frame, mesh.INNER_LIPS), frame),
        lips=_polygon(shape, frame, mesh.OUTER_LIPS),
    )


def _skin_colour(lab: FloatImage, frame: Frame) -> FloatImage:
    """How well each pixel's blurred colour matches either cheek (1 good, 0 not skin).

    Each cheek is its own reference, so a face lit from one side keeps both cheeks.
    """
    radius = max(1, round(frame.length(_CHEEK_RADIUS)))
    best = np.full(lab.shape[:2], np.inf, np.float32)
    for index in mesh.CHEEKS:
        x, y = (round(v) for v in frame.point(index))
        patch = lab[
            max(0, y - radius) : max(0, y + radius + 1), max(0, x - radius) : max(0, x + radius + 1)
        ].reshape(-1, 3)
        if len(patch) == 0:
            continue
        median = np.median(patch, axis=0)
        spread = 1.4826 * np.median(np.abs(patch - median), axis=0)
        spread = np.maximum(spread * 2.0, [_SPREAD_L, _SPREAD_AB, _SPREAD_AB])
        distance = np.sqrt((((lab - f32(median)) / f32(spread)) ** 2).sum(axis=2))
        best = np.minimum(best, f32(distance))
    if not np.isfinite(best).any():
        return np.zeros(lab.shape[:2], np.float32)
    return f32(np.clip((_MATCH_NONE - best) / (_MATCH_NONE - _MATCH_FULL), 0.0, 1.0))


def _under_eyes(shape: tuple[int, int], frame: Frame) -> FloatImage:
    """An ellipse under each eye, turned with the face: where dark circles sit."""
    area = np.zeros(shape, np.float32)
    for corner_a, corner_b in ((33, 133), (362, 263)):
        ax, ay = frame.point(corner_a)
        bx, by = frame.point(corner_b)
        eye_w = float(np.hypot(bx - ax, by - ay))
        angle = float(np.degrees(np.arctan2(by - ay, bx - ax)))
        down = np.array([-(by - ay), bx - ax]) / max(eye_w, 1e-3)  # the face's "down"
        cx, cy = (ax + bx) / 2 + down[0] * eye_w * 0.42, (ay + by) / 2 + down[1] * eye_w * 0.42
        axes = (max(1, round(eye_w * 0.55)), max(1, round(eye_w * 0.22)))
        cv2.ellipse(area, (round(cx), round(cy)), axes, angle, 0, 360, 1.0, -1)
    return area


def _teeth(small: FloatImage, mouth: FloatImage, frame: Frame) -> FloatImage:
    """Bright, nearly colourless pixels inside the lips: teeth, when the mouth is open."""
    inner = f32(cv2.erode(mouth, _disc(frame.length(0.01))))
    if not inner.any():
        return inner
    hsv = f32(cv2.cvtColor(small, cv2.COLOR_RGB2HSV))
    value, saturation = hsv[:, :, 2], hsv[:, :, 1]
    bright = np.clip((value - 0.35) / 0.2, 0.0, 1.0) * np.clip((0.55 - saturation) / 0.25, 0, 1)
    return blur(inner * f32(bright), frame.length(0.005, 0.5))


def _polygon(
    shape: tuple[int, int], frame: Frame, indices: Sequence[int], margin: float = 0.0
) -> FloatImage:
    """The landmarks' polygon filled with 1, grown by `margin` work px."""
    area = np.zeros(shape, np.float32)
    outline = frame.outline(indices)
    cv2.fillPoly(area, [outline], 1.0, lineType=cv2.LINE_AA, shift=4)
    if margin >= 0.5:
        thickness = max(1, round(2 * margin))
        cv2.polylines(area, [outline], True, 1.0, thickness, cv2.LINE_AA, shift=4)
    return area


def _disc(diameter: float) -> np.ndarray:
    side = max(1, round(diameter)) | 1
    return np.asarray(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side)))
