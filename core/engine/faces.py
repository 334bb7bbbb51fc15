"""`detect_faces`: the faces in a photo, each with its box, landmarks and score."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.engine.arrays import Points, RGBImage, check_rgb
from core.engine.detection import find_candidates
from core.engine.landmarks import face_mesh

_SAME_FACE_IOU = 0.4  # two meshes overlapping this much are one face found twice


@dataclass(frozen=True)
class FaceBox:
    """A face's bounding box in pixels of the photo it was found in."""

    x: int
    y: int
    w: int
    h: int

    def iou(self, other: FaceBox) -> float:
        """Intersection over union with another box (0 when apart, 1 when equal)."""
        w = min(self.x + self.w, other.x + other.w) - max(self.x, other.x)
        h = min(self.y + self.h, other.y + other.h) - max(self.y, other.y)
        if w <= 0 or h <= 0:
            return 0.0
        inter = w * h
        return inter / (self.w * self.h + other.w * other.h - inter)


@dataclass(frozen=True, eq=False)
class Face:
    """A face: its box (the landmarks' extent), its 468 landmarks and the mesh's score."""

    box: FaceBox
    landmarks: Points
    score: float


def detect_faces(rgb: RGBImage) -> list[Face]:
    """Every face in an RGB photo, largest first; an empty list when there is none."""
    check_rgb(rgb)
    height, width = rgb.shape[:2]
    faces: list[Face] = []
    for candidate in find_candidates(rgb):
        mesh = face_mesh(rgb, candidate)
        if mesh is None:
            continue
        box = _box(mesh.points, width, height)
        if box.w < 2 or box.h < 2:
            continue
        face = Face(box, mesh.points, mesh.score)
        twin = next((i for i, f in enumerate(faces) if f.box.iou(box) > _SAME_FACE_IOU), None)
        if twin is None:
            faces.append(face)
        elif face.score > faces[twin].score:
            faces[twin] = face
    return sorted(faces, key=lambda f: f.box.w * f.box.h, reverse=True)


def _box(points: Points, width: int, height: int) -> FaceBox:
    """The landmarks' axis-aligned extent, clipped to the photo."""
    x0, y0 = np.floor(points.min(axis=0))
    x1, y1 = np.ceil(points.max(axis=0))
    x0, y0 = max(0, int(x0)), max(0, int(y0))
    x1, y1 = min(width, int(x1)), min(height, int(y1))
    return FaceBox(x0, y0, x1 - x0, y1 - y0)
