"""Real photographs from installed packages, and variants of them with known face boxes.

scikit-image's astronaut (Eileen Collins, NASA, public domain) and cameraman, and matplotlib's
Grace Hopper (US Navy, public domain) are the faces; scikit-image's coffee, cat, rocket, coins,
Hubble deep field, retina and tissue stain are photos with no face. Variants scale, turn,
darken, grey, compress and group the faces; every variant knows where its faces are.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
from PIL import Image

from core.engine import FaceBox, RGBImage


@dataclass(frozen=True)
class Photo:
    """A photo and the boxes of the faces in it (none for a photo with no face)."""

    name: str
    rgb: RGBImage
    faces: tuple[FaceBox, ...]


# The faces of the source photos, checked by eye: from the top of the forehead to the chin.
_SOURCES: dict[str, FaceBox] = {
    "astronaut": FaceBox(177, 67, 96, 108),
    "grace_hopper": FaceBox(165, 127, 191, 206),
    "cameraman": FaceBox(195, 126, 64, 69),
}
NO_FACE = (
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
)


@cache
def source(name: str) -> Photo:
    """One of the source portraits, as RGB, with its face box."""
    if name == "grace_hopper":
        import matplotlib.cbook

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        with Image.open(str(path)) as image:
            rgb = np.asarray(image.convert("RGB"))
    else:
        rgb = _skimage("camera" if name == "cameraman" else name)
    return Photo(name, rgb, (_SOURCES[name],))


def no_face_photos() -> list[Photo]:
    return [Photo(name, _skimage(name), ()) for name in NO_FACE]


def _skimage(name: str) -> RGBImage:
    from skimage import data

    pixels = np.asarray(getattr(data, name)())
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3], dtype=np.uint8)


def scaled(photo: Photo, face_width: int, canvas: tuple[int, int] = (1600, 1200)) -> Photo:
    """The photo scaled so its face is `face_width` px wide, on a scene with no face."""
    [face] = photo.faces
    factor = face_width / face.w
    size = (max(1, round(photo.rgb.shape[1] * factor)), max(1, round(photo.rgb.shape[0] * factor)))
    small = _resize(photo.rgb, size)
    width, height = max(canvas[0], size[0]), max(canvas[1], size[1])
    scene = _resize(_skimage("coffee"), (width, height))
    left, top = (width - size[0]) // 3, (height - size[1]) // 2
    scene[top : top + size[1], left : left + size[0]] = small
    box = _moved(face, factor, left, top)
    return Photo(f"{photo.name}_{face_width}px", scene, (box,))


def rotated(photo: Photo, degrees: float) -> Photo:
    """The photo turned about its face's centre (the box keeps its centre and size)."""
    [face] = photo.faces
    centre = (face.x + face.w / 2, face.y + face.h / 2)
    turn = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    height, width = photo.rgb.shape[:2]
    rgb = cv2.warpAffine(photo.rgb, turn, (width, height), borderMode=cv2.BORDER_REFLECT)
    return Photo(f"{photo.name}_rot{degrees:g}", np.asarray(rgb, np.uint8), photo.faces)


def mirrored(photo: Photo) -> Photo:
    """The photo flipped left to right: the same face, seen turned the other way."""
    width = photo.rgb.shape[1]
    boxes = tuple(FaceBox(width - b.x - b.w, b.y, b.w, b.h) for b in photo.faces)
    return Photo(f"{photo.name}_mirror", np.ascontiguousarray(photo.rgb[:, ::-1]), boxes)


def darkened(photo: Photo) -> Photo:
    """A dark, underexposed photo: a third of the light, with a gamma."""
    dark = 255.0 * (photo.rgb / 255.0) ** 1.6 * 0.45
    return Photo(f"{photo.name}_dark", dark.round().astype(np.uint8), photo.faces)


def greyed(photo: Photo) -> Photo:
    grey = cv2.cvtColor(photo.rgb, cv2.COLOR_RGB2GRAY)
    return Photo(f"{photo.name}_grey", np.repeat(grey[:, :, None], 3, axis=2), photo.faces)


def compressed(photo: Photo, quality: int = 30) -> Photo:
    buffer = io.BytesIO()
    Image.fromarray(photo.rgb).save(buffer, "JPEG", quality=quality)
    with Image.open(buffer) as image:
        rgb = np.asarray(image.convert("RGB"))
    return Photo(f"{photo.name}_jpeg{quality}", rgb, photo.faces)


def group(count: int, face_width: int = 115, canvas: tuple[int, int] = (2400, 1600)) -> Photo:
    """`count` faces of the sources side by side on a scene, each `face_width` px wide."""
    width, height = canvas
    scene = _resize(_skimage("coffee"), canvas)
    rng = np.random.default_rng(count)
    names = list(_SOURCES)
    boxes = []
    columns = min(count, 3)
    rows = (count + columns - 1) // columns
    for i in range(count):
        photo = source(names[i % len(names)])
        [face] = photo.faces
        factor = face_width * rng.uniform(0.85, 1.15) / face.w
        crop_box = FaceBox(
            max(0, face.x - face.w // 2), max(0, face.y - face.h // 2), face.w * 2, face.h * 2
        )
        crop = photo.rgb[crop_box.y : crop_box.y + crop_box.h, crop_box.x : crop_box.x + crop_box.w]
        size = (round(crop.shape[1] * factor), round(crop.shape[0] * factor))
        cell_w, cell_h = width // columns, height // rows
        left = (i % columns) * cell_w + int(rng.integers(0, max(1, cell_w - size[0])))
        top = (i // columns) * cell_h + int(rng.integers(0, max(1, cell_h - size[1])))
        scene[top : top + size[1], left : left + size[0]] = _resize(crop, size)
        inner = FaceBox(face.x - crop_box.x, face.y - crop_box.y, face.w, face.h)
        boxes.append(_moved(inner, factor, left, top))
    return Photo(f"group_{count}", scene, tuple(boxes))


def variants() -> list[Photo]:
    """Every variant the benchmark measures (the tests use some of them)."""
    photos: list[Photo] = []
    for base in [source(name) for name in _SOURCES] + [mirrored(source(n)) for n in _SOURCES]:
        photos.append(base)
        photos += [scaled(base, width) for width in (40, 60, 100, 200, 400)]
        photos += [rotated(base, degrees) for degrees in (15, 30, 45, -30)]
        photos += [f(base) for f in (darkened, greyed, compressed)]
    photos += [group(count) for count in range(2, 7)]
    astronaut = source("astronaut")
    photos.append(_renamed(scaled(astronaut, 260, (4000, 3000)), "astronaut_260px_12MP"))
    photos.append(_renamed(scaled(astronaut, 57, (3000, 2250)), "astronaut_57px_7MP"))
    return photos


def _renamed(photo: Photo, name: str) -> Photo:
    return Photo(name, photo.rgb, photo.faces)


def _moved(box: FaceBox, factor: float, left: int, top: int) -> FaceBox:
    return FaceBox(
        round(box.x * factor) + left,
        round(box.y * factor) + top,
        round(box.w * factor),
        round(box.h * factor),
    )


def _resize(rgb: RGBImage, size: tuple[int, int]) -> RGBImage:
    method = cv2.INTER_AREA if size[0] < rgb.shape[1] else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(rgb, size, interpolation=method), dtype=np.uint8)


def matches(found: FaceBox, truth: FaceBox) -> bool:
    """Whether a detection is the known face: centres within half a face, sizes within 2x."""
    dx = (found.x + found.w / 2) - (truth.x + truth.w / 2)
    dy = (found.y + found.h / 2) - (truth.y + truth.h / 2)
    return bool(np.hypot(dx, dy) < 0.5 * truth.w and 0.5 < found.w / truth.w < 2.0)


Variant = Callable[[Photo], Photo]
