"""LocalBackend: the engine behind the backend protocol, formats and colour profiles kept."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageCms, JpegImagePlugin

from core import local_backend
from core.backend import RetouchBackend
from core.engine import Retouched
from core.errors import BackendError, FidelityError, NoFaceError
from core.formats import ImageFormat, PreparedImage, sniff_format
from core.local_backend import LocalBackend

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def prepared(data: bytes) -> PreparedImage:
    kind: ImageFormat | None = sniff_format(data)
    assert kind is not None
    with Image.open(io.BytesIO(data)) as image:
        return PreparedImage(data=data, format=kind, width=image.width, height=image.height)


@pytest.fixture
async def backend() -> AsyncIterator[LocalBackend]:
    engine = LocalBackend(threads=2)
    yield engine
    await engine.aclose()


@pytest.fixture(scope="module")
def portrait(portrait_rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(portrait_rgb)


def face_change(result: bytes, portrait_rgb: np.ndarray) -> float:
    with Image.open(io.BytesIO(result)) as image:
        after = np.asarray(image.convert("RGB")).astype(int)
    return float(np.abs(after[66:161, 177:272] - portrait_rgb[66:161, 177:272].astype(int)).mean())


async def test_is_a_retouch_backend(backend: LocalBackend) -> None:
    assert isinstance(backend, RetouchBackend)
    assert backend.name == "local"


async def test_jpeg_comes_back_as_jpeg_with_its_profile_and_nothing_else(
    backend: LocalBackend, portrait: Image.Image, portrait_rgb: np.ndarray
) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"  # Make
    data = encode(portrait, "JPEG", quality=92, subsampling=0, icc_profile=SRGB, exif=exif)
    result = await backend.retouch(prepared(data), 0.1)
    assert sniff_format(result) == "jpeg"
    with Image.open(io.BytesIO(result)) as image:
        assert image.size == portrait.size
        assert image.info.get("icc_profile") == SRGB
        assert "exif" not in image.info
        assert JpegImagePlugin.get_sampling(image) == 0  # 4:4:4, as it came in
    assert face_change(result, portrait_rgb) > 1.0


async def test_png_comes_back_as_png_with_its_transparency(
    backend: LocalBackend, portrait: Image.Image, portrait_rgb: np.ndarray
) -> None:
    rgba = portrait.convert("RGBA")
    alpha = np.full(portrait_rgb.shape[:2], 255, np.uint8)
    alpha[:, :40] = 0
    rgba.putalpha(Image.fromarray(alpha))
    result = await backend.retouch(prepared(encode(rgba, "PNG", icc_profile=SRGB)), 0.1)
    assert sniff_format(result) == "png"
    with Image.open(io.BytesIO(result)) as image:
        assert image.mode == "RGBA"
        assert image.size == portrait.size
        assert image.info.get("icc_profile") == SRGB
        assert np.array_equal(np.asarray(image.getchannel("A")), alpha)
    assert face_change(result, portrait_rgb) > 1.0


async def test_webp_comes_back_as_webp(
    backend: LocalBackend, portrait: Image.Image, portrait_rgb: np.ndarray
) -> None:
    result = await backend.retouch(prepared(encode(portrait, "WEBP", quality=95)), 0.1)
    assert sniff_format(result) == "webp"
    with Image.open(io.BytesIO(result)) as image:
        assert image.size == portrait.size
    assert face_change(result, portrait_rgb) > 1.0


async def test_a_grey_photo_stays_grey(backend: LocalBackend, portrait: Image.Image) -> None:
    result = await backend.retouch(prepared(encode(portrait.convert("L"), "JPEG")), 0.1)
    with Image.open(io.BytesIO(result)) as image:
        assert image.mode == "L"
        assert image.size == portrait.size


async def test_a_profile_for_other_pixels_is_dropped(
    backend: LocalBackend, portrait: Image.Image
) -> None:
    cmyk_profile = SRGB[:16] + b"CMYK" + SRGB[20:]  # only the header's colour space matters here
    data = encode(portrait.convert("CMYK"), "JPEG", icc_profile=cmyk_profile)
    result = await backend.retouch(prepared(data), 0.1)
    with Image.open(io.BytesIO(result)) as image:
        assert image.mode == "RGB"
        assert "icc_profile" not in image.info


async def test_no_face_is_the_shared_error(backend: LocalBackend, no_face_bytes: bytes) -> None:
    with pytest.raises(NoFaceError):
        await backend.retouch(prepared(no_face_bytes), 0.1)


@pytest.mark.parametrize("fidelity", [-0.1, 1.5, float("nan"), "0.5", True, None])
async def test_fidelity_must_be_between_zero_and_one(
    backend: LocalBackend, portrait_bytes: bytes, fidelity: Any
) -> None:
    with pytest.raises(FidelityError):
        await backend.retouch(prepared(portrait_bytes), fidelity)


async def test_works_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, portrait_bytes: bytes
) -> None:
    started, release = threading.Event(), threading.Event()
    threads: list[int] = []

    def engine(rgb: np.ndarray, fidelity: float) -> Retouched:
        threads.append(threading.get_ident())
        started.set()
        # were this on the event loop, nothing could set `release` and this would time out
        assert release.wait(timeout=10)
        return Retouched(rgb.copy(), ())

    monkeypatch.setattr(local_backend, "retouch_image", engine)
    backend = LocalBackend(threads=1)
    try:
        task = asyncio.create_task(backend.retouch(prepared(portrait_bytes), 0.5))
        assert await asyncio.to_thread(started.wait, 10)
        assert not task.done()
        release.set()
        assert sniff_format(await task) == "jpeg"
    finally:
        release.set()
        await backend.aclose()
    assert threads and threads[0] != threading.get_ident()


async def test_engine_failures_are_backend_errors(
    monkeypatch: pytest.MonkeyPatch, backend: LocalBackend, portrait_bytes: bytes
) -> None:
    def broken(rgb: np.ndarray, fidelity: float) -> Retouched:
        raise RuntimeError("boom")

    monkeypatch.setattr(local_backend, "retouch_image", broken)
    with pytest.raises(BackendError):
        await backend.retouch(prepared(portrait_bytes), 0.5)


async def test_undecodable_bytes_are_a_backend_error(backend: LocalBackend) -> None:
    image = PreparedImage(data=b"\xff\xd8\xff" + b"\x00" * 64, format="jpeg", width=1, height=1)
    with pytest.raises(BackendError):
        await backend.retouch(image, 0.5)


async def test_runs_several_photos_at_once(
    backend: LocalBackend, portrait_bytes: bytes, portrait_rgb: np.ndarray
) -> None:
    results = await asyncio.gather(
        *(backend.retouch(prepared(portrait_bytes), f) for f in (0.1, 0.5, 0.9))
    )
    changes = [face_change(result, portrait_rgb) for result in results]
    assert changes[0] > changes[1] > changes[2]


async def test_refuses_work_once_closed(portrait_bytes: bytes) -> None:
    backend = LocalBackend()
    await backend.aclose()
    await backend.aclose()  # closing twice is harmless
    with pytest.raises(BackendError):
        await backend.retouch(prepared(portrait_bytes), 0.5)


def test_needs_at_least_one_thread() -> None:
    with pytest.raises(ValueError, match="threads"):
        LocalBackend(threads=0)


async def test_reports_and_logs_the_faces_it_found(
    backend: LocalBackend, portrait_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="retouch.engine")
    data, report = await backend.retouch_reported(prepared(portrait_bytes), 0.3)
    assert sniff_format(data) == "jpeg"
    assert (report.width, report.height) == (512, 512)
    [face] = report.faces
    assert abs(face.x - 177) < 10 and abs(face.w - 96) < 10
    [line] = [r.getMessage() for r in caplog.records if r.name == "retouch.engine"]
    assert "512x512, fidelity 0.3, 1 face: " in line
    assert f"{face.w}x{face.h} at ({face.x},{face.y})" in line


async def test_no_face_is_logged_too(
    backend: LocalBackend, no_face_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="retouch.engine")
    with pytest.raises(NoFaceError):
        await backend.retouch(prepared(no_face_bytes), 0.1)
    assert any("No face found" in r.getMessage() for r in caplog.records)
