"""Face candidates from MediaPipe's BlazeFace detectors, over the whole photo and in tiles.

The detectors see a face when it is 16 to ~100 pixels wide in their small input, so one pass
over a downscaled photo finds only its larger faces. The short-range model looks at the whole
photo (close-ups, a face filling the frame), the full-range model at the whole photo and then at
tiles of finer copies, each a third of the scale of the next, down to the scale where a 40 px
face is 16 px: every face from ~40 px to the whole frame falls in one pass, whatever the
resolution. Candidates are merged across passes; the face mesh confirms or drops each.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
import numpy.typing as npt

from core.engine.arrays import RGBImage, f32
from core.engine.runtime import FULL_RANGE, SHORT_RANGE, Model

MIN_SCORE = 0.5  # the detectors' own threshold
_MERGE_IOU = 0.3  # overlapping candidates of one face, from several anchors or passes
_SMALLEST_FACE = 40  # px in the photo: the finest pass makes such a face this many px ...
_SMALLEST_SEEN = 16  # ... in the full-range model's input, where it still sees faces well
_LEVEL_STEP = 3.0  # each pass is this much coarser than the previous one
_TILE_OVERLAP = 64  # model px; a face up to ~48 model px wide lies whole in some tile


@dataclass(frozen=True)
class Candidate:
    """A detector hit in photo pixels: its box, the two eye keypoints and its score."""

    x0: float
    y0: float
    x1: float
    y1: float
    right_eye: tuple[float, float]  # the subject's right eye (on the left of a frontal face)
    left_eye: tuple[float, float]
    score: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


def find_candidates(rgb: RGBImage) -> list[Candidate]:
    """Every face candidate in `rgb`, merged across passes, best first."""
    height, width = rgb.shape[:2]
    found = _whole(rgb, SHORT_RANGE) + _whole(rgb, FULL_RANGE)
    for scale in pass_scales(width, height):
        found += _tiled(rgb, scale)
    return merge(found)


def pass_scales(width: int, height: int) -> list[float]:
    """The scales of the tiled passes, finest first; empty when the whole-photo pass suffices."""
    longest = max(width, height)
    whole_smallest = _SMALLEST_SEEN * longest / FULL_RANGE.side  # px, seen by the whole pass
    scales: list[float] = []
    scale = _SMALLEST_SEEN / _SMALLEST_FACE
    largest_in_tile = FULL_RANGE.side - _TILE_OVERLAP - _SMALLEST_SEEN
    while scale * longest > FULL_RANGE.side and _SMALLEST_SEEN / scale < whole_smallest:
        scales.append(scale)
        if largest_in_tile / scale >= whole_smallest:
            break
        scale /= _LEVEL_STEP
    return scales


def _whole(rgb: RGBImage, model: Model) -> list[Candidate]:
    """One pass over the whole photo, letterboxed into the model's square input."""
    height, width = rgb.shape[:2]
    scale = model.side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    square = np.zeros((model.side, model.side, 3), np.uint8)
    square[: size[1], : size[0]] = _resized(rgb, size)
    return _decode(model, _run(model, square), scale, 0.0, 0.0)


def _tiled(rgb: RGBImage, scale: float) -> list[Candidate]:
    """The full-range model on overlapping tiles of `rgb` scaled by `scale`."""
    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    scaled = _resized(rgb, size)
    side = FULL_RANGE.side
    found: list[Candidate] = []
    for top in _starts(size[1], side):
        for left in _starts(size[0], side):
            tile = np.zeros((side, side, 3), np.uint8)
            part = scaled[top : top + side, left : left + side]
            tile[: part.shape[0], : part.shape[1]] = part
            found += _decode(FULL_RANGE, _run(FULL_RANGE, tile), scale, left, top)
    return found


def _starts(length: int, side: int) -> list[int]:
    """Tile offsets along one axis: overlapping by `_TILE_OVERLAP`, the last flush with the end."""
    if length <= side:
        return [0]
    count = int(np.ceil((length - side) / (side - _TILE_OVERLAP))) + 1
    return [round(i * (length - side) / (count - 1)) for i in range(count)]


def _resized(rgb: RGBImage, size: tuple[int, int]) -> RGBImage:
    if size == (rgb.shape[1], rgb.shape[0]):
        return rgb
    shrinking = size[0] < rgb.shape[1]
    method = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(rgb, size, interpolation=method), dtype=np.uint8)


def _run(model: Model, square: RGBImage) -> tuple[npt.NDArray[np.float32], ...]:
    tensor = f32(square)[None] * np.float32(1 / 127.5) - np.float32(1)
    regressors, scores = model.run(tensor)
    return regressors[0], scores[0, :, 0]


def _decode(
    model: Model,
    outputs: tuple[npt.NDArray[np.float32], ...],
    scale: float,
    left: float,
    top: float,
) -> list[Candidate]:
    """The hits over `MIN_SCORE` in photo pixels, for a model input taken at (left, top) of a
    copy scaled by `scale`."""
    regressors, logits = outputs
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80, 80)))
    hits = np.flatnonzero(scores > MIN_SCORE)
    anchors = _anchors(model) * model.side
    found = []
    for i in hits:
        raw = regressors[i]
        cx, cy = raw[0] + anchors[i, 0], raw[1] + anchors[i, 1]
        w, h = raw[2], raw[3]
        if w <= 0 or h <= 0:
            continue

        def photo(x: float, y: float) -> tuple[float, float]:
            return (float((x + left) / scale), float((y + top) / scale))

        x0, y0 = photo(cx - w / 2, cy - h / 2)
        x1, y1 = photo(cx + w / 2, cy + h / 2)
        eyes = [
            photo(raw[4 + 2 * k] + anchors[i, 0], raw[5 + 2 * k] + anchors[i, 1]) for k in (0, 1)
        ]
        found.append(Candidate(x0, y0, x1, y1, eyes[0], eyes[1], float(scores[i])))
    return found


@cache
def _anchors(model: Model) -> npt.NDArray[np.float32]:
    """Anchor centres (0..1) of MediaPipe's SSD anchor calculator for each detector."""
    layers = [(8, 2), (16, 6)] if model is SHORT_RANGE else [(4, 1)]
    centres = []
    for stride, repeats in layers:
        cells = model.side // stride
        ys, xs = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(xs.ravel() + 0.5) / cells, (ys.ravel() + 0.5) / cells], axis=1)
        centres.append(np.repeat(grid, repeats, axis=0))
    return f32(np.concatenate(centres))


def iou(a: Candidate, b: Candidate) -> float:
    """Intersection over union of two candidates' boxes."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (a.width * a.height + b.width * b.height - inter)


def merge(found: list[Candidate]) -> list[Candidate]:
    """MediaPipe's weighted non-maximum suppression: overlapping hits become their
    score-weighted mean, with the best hit's score."""
    remaining = sorted(found, key=lambda c: c.score, reverse=True)
    merged: list[Candidate] = []
    while remaining:
        best = remaining[0]
        group = [c for c in remaining if iou(best, c) > _MERGE_IOU]
        remaining = [c for c in remaining if iou(best, c) <= _MERGE_IOU]
        weights = np.array([c.score for c in group])
        values = np.array(
            [[c.x0, c.y0, c.x1, c.y1, *c.right_eye, *c.left_eye] for c in group], np.float64
        )
        x0, y0, x1, y1, rx, ry, lx, ly = (float(v) for v in weights @ values / weights.sum())
        merged.append(Candidate(x0, y0, x1, y1, (rx, ry), (lx, ly), best.score))
    return merged
