"""The work frame of one face: a crop around it, scaled so the face is a fixed width.

Every filter length is a share of the face width in this frame, so the look is the same at
0.3 MP and at 12 MP, and a large photo costs little more than a small one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.engine.arrays import Points
from core.engine.faces import Face

WORK_FACE = 256  # px: the face's width in the work frame (smaller faces stay at their size)
_MARGIN = 0.15  # share of the face's size the crop reaches beyond its box on each side


@dataclass(frozen=True)
class Frame:
    """A crop of the photo (x0:x1, y0:y1), its work size and the face's landmarks in it."""

    x0: int
    y0: int
    x1: int
    y1: int
    scale: float  # work px per photo px (at most 1)
    width: int  # work size
    height: int
    face_width: float  # work px
    points: Points  # landmarks in work px

    @classmethod
    def around(cls, face: Face, photo_width: int, photo_height: int) -> Frame:
        box = face.box
        pad_x, pad_y = round(box.w * _MARGIN) + 2, round(box.h * _MARGIN) + 2
        x0, y0 = max(0, box.x - pad_x), max(0, box.y - pad_y)
        x1, y1 = min(photo_width, box.x + box.w + pad_x), min(photo_height, box.y + box.h + pad_y)
        scale = min(1.0, WORK_FACE / max(1, box.w))
        width, height = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
        points = (face.landmarks - np.array([x0, y0], np.float32)) * np.float32(scale)
        return cls(x0, y0, x1, y1, scale, width, height, box.w * scale, points)

    def box_region(self, face: Face) -> tuple[slice, slice]:
        """The face's box in work px, as a numpy index."""
        b = face.box
        x0, y0 = round((b.x - self.x0) * self.scale), round((b.y - self.y0) * self.scale)
        return (
            slice(y0, y0 + round(b.h * self.scale)),
            slice(x0, x0 + round(b.w * self.scale)),
        )

    def length(self, share: float, least: float = 1.0) -> float:
        """`share` of the face width in work px, at least `least`."""
        return max(least, share * self.face_width)

    def outline(self, indices: Sequence[int]) -> npt.NDArray[np.int32]:
        """The landmarks `indices` as a polygon for OpenCV's fill functions (1/16 px units)."""
        return np.round(self.points[list(indices)] * 16).astype(np.int32)

    def point(self, index: int) -> tuple[float, float]:
        x, y = self.points[index]
        return float(x), float(y)
