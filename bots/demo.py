"""`retouch-bot demo`: a portrait through the embedded engine, and a before/after sheet.

With no photo given it takes the sample portrait shipped in the package (`bots/samples`), so
it works from any folder, with nothing but the installed package.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from core.backend import open_backend
from core.captions import parse_fidelity
from core.engine import detect_faces
from core.errors import RetouchError
from core.formats import EXTENSIONS, sniff_format
from core.imaging import ImageLimits
from core.pipeline import retouch_photo_reported
from core.settings import Settings

SHEET_SIDE = 768
SAMPLE_NAME = "portrait"
SAMPLE_LABEL = "the sample portrait (Eileen Collins, NASA, public domain)"


def sample_portrait() -> bytes:
    """The sample portrait shipped with the package."""
    return (resources.files("bots") / "samples" / f"{SAMPLE_NAME}.jpg").read_bytes()


async def run_demo(
    settings: Settings, source: Path | None, out_dir: Path, fidelity_text: str
) -> int:
    """Retouch `source` (None: the sample) offline; write the result and a before/after sheet;
    print the paths and the time."""
    try:
        fidelity = parse_fidelity(fidelity_text)
        data = await asyncio.to_thread(source.read_bytes) if source else sample_portrait()
    except RetouchError as exc:
        print(f"retouch-bot: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"retouch-bot: {source}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    name = source.stem if source else SAMPLE_NAME

    async with open_backend(settings) as backend:
        started = time.perf_counter()
        try:
            result, report = await retouch_photo_reported(
                backend, data, fidelity, ImageLimits.from_settings(settings)
            )
        except RetouchError as exc:
            print(f"retouch-bot: {source or SAMPLE_LABEL}: {exc}", file=sys.stderr)
            return 2 if exc.user_fault else 1
        seconds = time.perf_counter() - started

    fmt = sniff_format(result) or "jpeg"
    result_path = out_dir / f"{name}-retouched{EXTENSIONS[fmt]}"
    sheet_path = out_dir / f"{name}-before-after.png"
    await asyncio.to_thread(_write_outputs, data, result, fidelity, result_path, sheet_path)

    with Image.open(io.BytesIO(result)) as image:
        size = f"{image.width}x{image.height}"
    print(f"backend:      {backend.name} engine, fidelity {fidelity:g}")
    print(f"input:        {source or SAMPLE_LABEL}")
    if report is not None:
        print(f"faces:        {report.describe()}")
    print(f"result:       {result_path} ({size})")
    print(f"before/after: {sheet_path}")
    print(f"time:         {seconds:.2f} s")
    return 0


def before_after_sheet(before: bytes, after: bytes, fidelity: float) -> Image.Image:
    """Both images side by side, and below them the first face enlarged, each pair labelled."""
    with Image.open(io.BytesIO(before)) as a, Image.open(io.BytesIO(after)) as b:
        left: Image.Image = _upright(a)
        right: Image.Image = b.convert("RGB").resize(left.size)
    scale = min(1.0, SHEET_SIDE / max(left.size))
    small = (round(left.width * scale), round(left.height * scale))
    rows = [
        (
            left.resize(small, Image.Resampling.LANCZOS),
            right.resize(small, Image.Resampling.LANCZOS),
        )
    ]
    faces = detect_faces(np.asarray(left))
    if faces:
        face = faces[0].box  # the largest
        pad = face.w // 3
        box = (
            max(0, face.x - pad),
            max(0, face.y - pad),
            min(left.width, face.x + face.w + pad),
            min(left.height, face.y + face.h + pad),
        )
        zoom = (small[0], small[0] * (box[3] - box[1]) // (box[2] - box[0]))
        crops = [im.crop(box).resize(zoom, Image.Resampling.LANCZOS) for im in (left, right)]
        rows.append((crops[0], crops[1]))
    label_h = 28
    width = max(old.width + new.width for old, new in rows)
    height = sum(old.height for old, _ in rows) + label_h
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=18)
    draw.text((8, 4), "before", fill="black", font=font)
    draw.text((rows[0][0].width + 8, 4), f"after (fidelity {fidelity:g})", fill="black", font=font)
    y = label_h
    for old, new in rows:
        sheet.paste(old, (0, y))
        sheet.paste(new, (old.width, y))
        y += old.height
    return sheet


def _write_outputs(
    before: bytes, after: bytes, fidelity: float, result_path: Path, sheet_path: Path
) -> None:
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_bytes(after)
    before_after_sheet(before, after, fidelity).save(sheet_path, optimize=True)


def _upright(image: Image.Image) -> Image.Image:
    return ImageOps.exif_transpose(image).convert("RGB")
