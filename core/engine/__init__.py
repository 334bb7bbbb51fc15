"""The embedded retouch engine: finds faces with a neural detector and retouches their skin.

    faces = detect_faces(rgb)            # boxes, landmarks and scores, largest first
    result = retouch_image(rgb, 0.1)     # result.image, result.faces

A retouch, not a neural restorer: MediaPipe's face detector and face mesh find each face and
its features, then classic image processing smooths, heals and evens the skin within masks
built from the landmarks. Strength follows CodeFormer's fidelity: lower is stronger.
"""

from core.engine.arrays import RGBImage
from core.engine.faces import Face, FaceBox, detect_faces
from core.engine.retouch import Retouched, retouch_image

__all__ = ["Face", "FaceBox", "RGBImage", "Retouched", "detect_faces", "retouch_image"]
