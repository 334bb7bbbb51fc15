"""`retouch_image`: every face in a photo retouched, in a work frame of its own."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.engine.arrays import RGBImage, check_rgb, f32
from core.engine.faces import Face, detect_faces
from core.engine.frame import Frame
from core.engine.masks import face_masks
from core.engine.skin import smooth_skin
from core.engine.tone import adjust_tone
from core.errors import NoFaceError
from core.fidelity import check_fidelity


@dataclass(frozen=True)
class Retouched:
    """The retouched photo and the faces found in it (largest first)."""

    image: RGBImage
    faces: tuple[Face, ...]


def retouch_image(rgb: RGBImage, fidelity: float) -> Retouched:
    """A copy of `rgb` with every face retouched; strength is 1 - fidelity (1.0 changes nothing).

    Raises `NoFaceError` when no face is found (at any fidelity, so the answer is consistent).
    """
    check_rgb(rgb)
    strength = 1.0 - check_fidelity(fidelity)
    faces = detect_faces(rgb)
    if not faces:
        raise NoFaceError("No face found in the photo")
    out = rgb.copy()
    if strength > 0.0:
        for face in faces:
            _retouch_face(out, face, strength)
    return Retouched(out, tuple(faces))


def _retouch_face(out: RGBImage, face: Face, strength: float) -> None:
    """Retouch one face in place: the steps run in its work frame, their change is scaled back
    to the photo's resolution, so texture finer than the work frame is kept as it was."""
    frame = Frame.around(face, out.shape[1], out.shape[0])
    crop = out[frame.y0 : frame.y1, frame.x0 : frame.x1]
    full = f32(crop) / np.float32(255)
    size = (frame.width, frame.height)
    small = (
        full if frame.scale >= 1.0 else f32(cv2.resize(full, size, interpolation=cv2.INTER_AREA))
    )
    masks = face_masks(small, frame)
    retouched = smooth_skin(small, masks.skin, frame, strength)
    retouched = adjust_tone(retouched, masks, frame, strength)
    delta = retouched - small
    if frame.scale < 1.0:
        delta = f32(
            cv2.resize(delta, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
        )
    result = f32(crop) + delta * np.float32(255) + np.float32(0.5)
    np.clip(result, 0, 255, out=result)
    out[frame.y0 : frame.y1, frame.x0 : frame.x1] = result.astype(np.uint8)
