"""MediaPipe's face mesh on one face: 468 landmarks, and a score that tells a face from a miss.

The mesh model wants the face upright in a square crop 1.5 times its size, so a detector
candidate is cropped turned by the angle of its eyes, the mesh is run, then run once more on the
crop its own landmarks give (MediaPipe's tracking step), which centres tilted and three-quarter
faces better than the detector's box does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from core.engine.arrays import Points, RGBImage, f32
from core.engine.detection import Candidate
from core.engine.runtime import FACE_MESH

MIN_FACE_SCORE = 0.5  # the mesh's own face-presence threshold
_CROP_SCALE = 1.5  # crop side over the face's size, as MediaPipe crops for the mesh
_RIGHT_EYE_CORNER, _LEFT_EYE_CORNER = 33, 263  # outer eye corners: the roll of the face


@dataclass(frozen=True)
class Mesh:
    """A face's landmarks in photo pixels (468 x 2) and the mesh's face score (0..1)."""

    points: Points
    score: float


def face_mesh(rgb: RGBImage, candidate: Candidate) -> Mesh | None:
    """The mesh of the face a candidate found, or None when the mesh sees no face there."""
    cx = (candidate.x0 + candidate.x1) / 2
    cy = (candidate.y0 + candidate.y1) / 2
    side = max(candidate.width, candidate.height) * _CROP_SCALE
    angle = _angle(candidate.right_eye, candidate.left_eye)
    first = _run(rgb, cx, cy, side, angle)
    if first.score < MIN_FACE_SCORE:
        return None
    return refined(rgb, first)


def refined(rgb: RGBImage, mesh: Mesh) -> Mesh | None:
    """The mesh run again on the crop its own landmarks give; None if that sees no face."""
    angle = _angle(tuple(mesh.points[_RIGHT_EYE_CORNER]), tuple(mesh.points[_LEFT_EYE_CORNER]))
    # the landmarks' extent in the face's own upright frame
    cos, sin = math.cos(angle), math.sin(angle)
    upright = mesh.points @ np.array([[cos, -sin], [sin, cos]], np.float32)
    low, high = upright.min(axis=0), upright.max(axis=0)
    centre_upright = (low + high) / 2
    cx = float(centre_upright[0] * cos - centre_upright[1] * sin)
    cy = float(centre_upright[0] * sin + centre_upright[1] * cos)
    side = float(max(high - low)) * _CROP_SCALE
    again = _run(rgb, cx, cy, side, angle)
    return again if again.score >= MIN_FACE_SCORE else None


def _angle(start: tuple[float, ...], end: tuple[float, ...]) -> float:
    """The roll (radians, clockwise in image coordinates) that makes start->end horizontal."""
    return math.atan2(end[1] - start[1], end[0] - start[0])


def _run(rgb: RGBImage, cx: float, cy: float, side: float, angle: float) -> Mesh:
    """The mesh on a `side`-wide square crop centred at (cx, cy), turned by `angle`."""
    size = FACE_MESH.side
    to_crop = _crop_transform(cx, cy, side, angle, size)
    crop = cv2.warpAffine(
        rgb, to_crop, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    tensor = f32(crop)[None] * np.float32(1 / 255)
    raw_points, raw_score = FACE_MESH.run(tensor)
    points = raw_points.reshape(-1, 3)[:, :2]
    to_photo = cv2.invertAffineTransform(to_crop)
    in_photo = points @ f32(to_photo[:, :2]).T + f32(to_photo[:, 2])
    score = 1.0 / (1.0 + math.exp(-float(np.clip(raw_score.ravel()[-1], -80, 80))))
    return Mesh(f32(in_photo), score)


def _crop_transform(
    cx: float, cy: float, side: float, angle: float, size: int
) -> npt.NDArray[np.float64]:
    """The affine map from photo pixels to the upright `size` x `size` crop."""
    scale = size / side
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    # rotate by -angle about (cx, cy), scale, then move (cx, cy) to the crop's centre
    return np.array(
        [
            [cos, sin, size / 2 - cos * cx - sin * cy],
            [-sin, cos, size / 2 + sin * cx - cos * cy],
        ],
        dtype=np.float64,
    )
