"""Image preparation: fast path, orientation, HEIC, colour profiles, metadata, refusals, fitting."""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pillow_heif
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import ExifTags, Image, ImageCms, ImageFile, ImageOps
from PIL.PngImagePlugin import PngInfo

from core.errors import (
    AnimatedImageError,
    ImageTooLargeError,
    NotAnImageError,
    ResultInvalidError,
)
from core.formats import sniff_format
from core.imaging import ImageLimits, fit_for_upload, prepare_image
from core.settings import load_settings

RED = (255, 0, 0)
BLUE = (0, 0, 255)
ICC_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
# Too big for one JPEG APP2 segment: it takes three, and must come back whole and in order.
ICC_LARGE = ICC_SRGB + bytes(range(256)) * 600
XMP_GPS = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">exif:GPSLatitude="52,22.1N"</x:xmpmeta>'


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def noise(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    channels = len(mode)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)
    return Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode)


def marked(width: int, height: int) -> Image.Image:
    """Blue, with a red square in the top-left corner: shows where a rotation took that corner."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 4, height // 4))
    return image


def pixel(image: Image.Image, x: int, y: int) -> tuple[int, ...]:
    value = image.getpixel((x, y))
    assert isinstance(value, tuple)
    return value


def is_red(image: Image.Image, x: int, y: int) -> bool:
    red, green, blue = pixel(image.convert("RGB"), x, y)
    return red > 200 and green < 60 and blue < 60


def exif_bytes(orientation: int | None = None, gps: bool = False) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneCo"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if gps:
        gps_ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)
        gps_ifd[ExifTags.GPS.GPSLatitudeRef] = "N"
        gps_ifd[ExifTags.GPS.GPSLatitude] = (52.0, 22.0, 7.0)
    return exif.tobytes()


@pytest.fixture
def load_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every pixel decode Pillow does (every format's `load()` ends in ImageFile's)."""
    calls: list[str] = []
    original = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> Any:
        calls.append(str(self.format))
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


# --- the fast path ------------------------------------------------------------------------

# Nothing in these to strip: they come back as the very same bytes object.
FAST_PATH_CASES: dict[str, Callable[[], bytes]] = {
    "jpeg": lambda: encode(marked(64, 48), "JPEG", quality=90),
    "jpeg-grey": lambda: encode(marked(64, 48).convert("L"), "JPEG"),
    "jpeg-progressive": lambda: encode(noise(64, 48), "JPEG", progressive=True),
    "jpeg-icc": lambda: encode(marked(64, 48), "JPEG", icc_profile=ICC_LARGE),
    "png": lambda: encode(marked(64, 48), "PNG"),
    "png-rgba": lambda: encode(noise(32, 32, "RGBA"), "PNG"),
    "png-palette": lambda: encode(marked(64, 48).convert("P"), "PNG"),
    "png-icc": lambda: encode(marked(64, 48), "PNG", icc_profile=ICC_SRGB, dpi=(72, 72)),
    "webp": lambda: encode(marked(64, 48), "WEBP", quality=80),
    "webp-lossless": lambda: encode(marked(64, 48), "WEBP", lossless=True),
    "webp-icc": lambda: encode(marked(64, 48), "WEBP", icc_profile=ICC_SRGB),
}


@pytest.mark.parametrize("case", FAST_PATH_CASES)
def test_fast_path_returns_the_same_bytes_without_decoding(
    case: str, load_calls: list[str]
) -> None:
    data = FAST_PATH_CASES[case]()
    prepared = prepare_image(data)
    assert prepared.data is data
    assert prepared.format == sniff_format(data)
    assert (prepared.width, prepared.height) == ((32, 32) if case == "png-rgba" else (64, 48))
    assert load_calls == []


def test_the_sample_portrait_takes_the_fast_path(portrait_bytes: bytes) -> None:
    prepared = prepare_image(portrait_bytes)
    assert prepared.data is portrait_bytes
    assert (prepared.format, prepared.width, prepared.height) == ("jpeg", 512, 512)


# --- orientation, HEIC, colour profiles, metadata -----------------------------------------


def test_exif_orientation_6_is_applied_to_the_pixels() -> None:
    # Orientation 6: the camera was turned a quarter clockwise, so the stored top-left corner
    # belongs at the top right once the picture is upright.
    data = encode(marked(80, 40), "JPEG", quality=95, exif=exif_bytes(6))
    prepared = prepare_image(data)
    assert (prepared.format, prepared.width, prepared.height) == ("jpeg", 40, 80)
    result = decode(prepared.data)
    assert result.size == (40, 80)
    assert ExifTags.Base.Orientation not in result.getexif()
    assert is_red(result, 36, 3)
    assert not is_red(result, 3, 3)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_every_orientation_turns_the_way_pillow_does(orientation: int) -> None:
    source = marked(80, 40)
    source.info["exif"] = exif_bytes(orientation)
    expected = ImageOps.exif_transpose(source)
    prepared = prepare_image(
        encode(marked(80, 40), "JPEG", quality=95, exif=exif_bytes(orientation))
    )
    result = decode(prepared.data)
    assert result.size == expected.size
    w, h = result.size
    for x, y in [(2, 2), (w - 3, 2), (2, h - 3), (w - 3, h - 3)]:
        assert is_red(result, x, y) == is_red(expected, x, y)


def test_a_png_with_its_exif_after_the_pixels_is_still_turned_upright() -> None:
    png = encode(marked(80, 40), "PNG")
    payload = exif_bytes(6).removeprefix(b"Exif\x00\x00")
    body = b"eXIf" + payload
    chunk = struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))
    iend = png.rindex(b"IEND") - 4
    prepared = prepare_image(png[:iend] + chunk + png[iend:])
    assert (prepared.width, prepared.height) == (40, 80)
    assert is_red(decode(prepared.data), 36, 3)


def test_heic_from_an_iphone_becomes_a_jpeg_of_the_same_size() -> None:
    buffer = io.BytesIO()
    pillow_heif.from_pillow(marked(96, 64)).save(buffer, quality=90)
    data = buffer.getvalue()
    assert sniff_format(data) == "heif"
    prepared = prepare_image(data)
    assert (prepared.format, prepared.width, prepared.height) == ("jpeg", 96, 64)
    result = decode(prepared.data)
    assert (result.format, result.size) == ("JPEG", (96, 64))
    assert is_red(result, 3, 3)


def test_a_rotated_heic_is_turned_once_not_twice() -> None:
    buffer = io.BytesIO()
    pillow_heif.from_pillow(marked(96, 64)).save(buffer, quality=90, exif=exif_bytes(6))
    prepared = prepare_image(buffer.getvalue())
    assert (prepared.width, prepared.height) == (64, 96)
    assert is_red(decode(prepared.data), 60, 3)


def test_a_multi_image_heic_gives_its_primary_image() -> None:
    heif = pillow_heif.from_pillow(Image.new("RGB", (40, 30), RED))
    heif.add_from_pillow(Image.new("RGB", (50, 20), BLUE))
    buffer = io.BytesIO()
    heif.save(buffer, primary_index=1)
    prepared = prepare_image(buffer.getvalue())
    assert (prepared.format, prepared.width, prepared.height) == ("jpeg", 50, 20)


def test_a_multi_picture_jpeg_is_not_taken_for_an_animation(load_calls: list[str]) -> None:
    # Phones store depth maps and HDR gain maps as extra MPF pictures behind the main JPEG, each
    # with EXIF of its own: only the main picture goes on, as a plain JPEG, still undecoded.
    gain_map = Image.new("L", (32, 24))
    data = encode(
        marked(64, 48), "MPO", save_all=True, append_images=[gain_map], exif=exif_bytes(gps=True)
    )
    assert data.count(b"PhoneCo") == 2
    prepared = prepare_image(data)
    assert load_calls == []
    assert (prepared.format, prepared.width, prepared.height) == ("jpeg", 64, 48)
    assert b"PhoneCo" not in prepared.data
    assert b"MPF\x00" not in prepared.data
    assert prepared.data.endswith(b"\xff\xd9")
    assert scan_data(prepared.data) == scan_data(data)
    result = decode(prepared.data)
    assert result.format == "JPEG"
    assert np.array_equal(np.asarray(result), np.asarray(decode(data)))


ICC_CASES: dict[str, tuple[Callable[[], bytes], ImageLimits, str]] = {
    "tiff": (
        lambda: encode(marked(64, 48), "TIFF", icc_profile=ICC_SRGB),
        ImageLimits(),
        "jpeg",
    ),
    "jpeg-downscaled": (
        lambda: encode(marked(64, 48), "JPEG", icc_profile=ICC_SRGB),
        ImageLimits(max_pixels=1000),
        "jpeg",
    ),
    "png-alpha-downscaled": (
        lambda: encode(noise(64, 48, "RGBA"), "PNG", icc_profile=ICC_SRGB),
        ImageLimits(max_pixels=1000),
        "png",
    ),
}


@pytest.mark.parametrize("case", ICC_CASES)
def test_the_icc_profile_survives_a_re_encode(case: str) -> None:
    make, limits, expected_format = ICC_CASES[case]
    data = make()
    prepared = prepare_image(data, limits)
    assert prepared.data != data
    assert prepared.format == expected_format
    assert decode(prepared.data).info.get("icc_profile") == ICC_SRGB


def test_gps_exif_and_comments_are_stripped_on_re_encode() -> None:
    data = encode(marked(80, 40), "JPEG", exif=exif_bytes(6, gps=True), comment=b"home address")
    source = Image.open(io.BytesIO(data))
    assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    prepared = prepare_image(data)
    result = decode(prepared.data)
    assert len(result.getexif()) == 0
    assert "exif" not in result.info
    assert "comment" not in result.info
    assert b"PhoneCo" not in prepared.data
    assert b"home address" not in prepared.data


def test_a_cmyk_jpeg_is_converted_to_rgb() -> None:
    data = encode(marked(64, 48).convert("CMYK"), "JPEG")
    prepared = prepare_image(data)
    result = decode(prepared.data)
    assert (prepared.format, result.mode, result.size) == ("jpeg", "RGB", (64, 48))
    assert is_red(result, 3, 3)


# --- metadata dropped from the fast path, without decoding ---------------------------------


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """Each header segment's marker code and payload, up to SOS (no fill bytes expected)."""
    segments, position = [], 2
    while data[position + 1] != 0xDA:
        assert data[position] == 0xFF
        end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        segments.append((data[position + 1], data[position + 4 : end]))
        position = end
    return segments


def scan_data(jpeg: bytes) -> bytes:
    """From the (only) SOS on: the first picture's entropy-coded data, up to its EOI."""
    start = jpeg.rindex(b"\xff\xda", 0, jpeg.index(b"\xff\xd9") + 2)
    return jpeg[start : jpeg.index(b"\xff\xd9", start) + 2]


def png_chunks(data: bytes) -> list[bytes]:
    """Each chunk's type, checking that its CRC is valid."""
    kinds, position = [], 8
    while position < len(data):
        (length,) = struct.unpack_from(">I", data, position)
        body = data[position + 4 : position + 8 + length]
        assert struct.unpack_from(">I", data, position + 8 + length)[0] == zlib.crc32(body)
        kinds.append(body[:4])
        position += 12 + length
    return kinds


def webp_chunks(data: bytes) -> dict[bytes, bytes]:
    """Each chunk's payload by type, checking the RIFF size."""
    assert int.from_bytes(data[4:8], "little") == len(data) - 8
    chunks, position = {}, 12
    while position < len(data):
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        chunks[data[position : position + 4]] = data[position + 8 : position + 8 + size]
        position += 8 + size + size % 2
    return chunks


def same_pixels(a: bytes, b: bytes) -> bool:
    return np.array_equal(np.asarray(decode(a)), np.asarray(decode(b)))


def assert_no_metadata(data: bytes) -> None:
    result = decode(data)
    assert len(result.getexif()) == 0
    assert not result.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert not {"exif", "xmp", "comment", "XML:com.adobe.xmp"} & set(result.info)
    for secret in (b"PhoneCo", b"52,22.1N", b"home address"):
        assert secret not in data


def test_jpeg_metadata_is_dropped_and_the_icc_profile_kept_without_a_re_encode(
    load_calls: list[str],
) -> None:
    data = encode(
        noise(64, 48),
        "JPEG",
        exif=exif_bytes(1, gps=True),
        xmp=XMP_GPS,
        comment=b"home address",
        icc_profile=ICC_LARGE,
    )
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    prepared = prepare_image(data)
    assert load_calls == []
    assert (prepared.format, prepared.width, prepared.height) == ("jpeg", 64, 48)
    assert_no_metadata(prepared.data)
    segments = jpeg_segments(prepared.data)
    assert [code for code, _ in segments if code >= 0xE0] == [0xE0, 0xE2, 0xE2, 0xE2]
    assert [s for s in jpeg_segments(data) if s[0] not in (0xE1, 0xFE)] == segments
    assert decode(prepared.data).info["icc_profile"] == ICC_LARGE
    assert scan_data(prepared.data) == scan_data(data)
    assert same_pixels(prepared.data, data)


def segment(code: int, payload: bytes) -> bytes:
    return bytes([0xFF, code]) + struct.pack(">H", len(payload) + 2) + payload


def test_jpeg_segments_are_walked_past_fill_bytes_and_adobe_is_kept() -> None:
    jpeg = encode(noise(64, 48), "JPEG")
    after_jfif = 2 + 4 + len(jpeg_segments(jpeg)[0][1])
    adobe = segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01")  # transform 1: YCbCr
    extra = [
        segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04home address"),
        b"\xff\xff" + adobe,  # fill bytes before a marker
        segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + XMP_GPS),
        segment(0xE2, b"FPXR\x00PhoneCo"),
        segment(0xEB, b"JP\x00\x00PhoneCo"),  # APP11 (JPEG XT, C2PA)
        segment(0xFE, b"home address"),
    ]
    data = jpeg[:after_jfif] + b"".join(extra) + jpeg[after_jfif:]
    prepared = prepare_image(data)
    assert_no_metadata(prepared.data)
    assert prepared.data == jpeg[:after_jfif] + adobe + jpeg[after_jfif:]
    assert same_pixels(prepared.data, data)


def test_a_comment_between_progressive_scans_is_dropped() -> None:
    jpeg = encode(noise(64, 48), "JPEG", progressive=True)
    second_scan = jpeg.index(b"\xff\xda", jpeg.index(b"\xff\xda") + 2)
    comment = segment(0xFE, b"home address")
    data = jpeg[:second_scan] + comment + jpeg[second_scan:]
    prepared = prepare_image(data)
    assert prepared.data == jpeg
    assert same_pixels(prepared.data, data)


def test_png_metadata_is_dropped_and_the_rest_copied_as_it_is(load_calls: list[str]) -> None:
    info = PngInfo()
    info.add_text("Comment", "home address")
    info.add_text("Location", "52,22.1N", zip=True)
    info.add_itxt("XML:com.adobe.xmp", XMP_GPS.decode())
    info.add(b"tIME", struct.pack(">HBBBBB", 2024, 5, 6, 7, 8, 9))
    data = encode(
        noise(64, 48, "RGBA"),
        "PNG",
        exif=exif_bytes(gps=True),
        icc_profile=ICC_SRGB,
        pnginfo=info,
        dpi=(72, 72),
    )
    dropped = {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"}
    assert dropped <= set(png_chunks(data))
    prepared = prepare_image(data)
    assert load_calls == []
    assert (prepared.format, prepared.width, prepared.height) == ("png", 64, 48)
    assert_no_metadata(prepared.data)
    assert png_chunks(prepared.data) == [k for k in png_chunks(data) if k not in dropped]
    assert b"iCCP" in png_chunks(prepared.data)
    assert decode(prepared.data).info["icc_profile"] == ICC_SRGB
    assert same_pixels(prepared.data, data)


WEBP_CASES: dict[str, tuple[Image.Image, dict[str, Any]]] = {
    "lossy": (noise(64, 48), {"quality": 80}),
    "lossy-alpha": (noise(64, 48, "RGBA"), {"quality": 80}),
    "lossless": (noise(64, 48, "RGBA"), {"lossless": True}),
}


@pytest.mark.parametrize("case", WEBP_CASES)
def test_webp_metadata_is_dropped_and_the_icc_profile_kept(
    case: str, load_calls: list[str]
) -> None:
    image, params = WEBP_CASES[case]
    data = encode(
        image, "WEBP", exif=exif_bytes(gps=True), xmp=XMP_GPS, icc_profile=ICC_SRGB, **params
    )
    assert {b"EXIF", b"XMP "} <= set(webp_chunks(data))
    prepared = prepare_image(data)
    assert load_calls == []
    assert (prepared.format, prepared.width, prepared.height) == ("webp", 64, 48)
    assert_no_metadata(prepared.data)
    before, after = webp_chunks(data), webp_chunks(prepared.data)
    old_header, new_header = before.pop(b"VP8X"), after.pop(b"VP8X")
    assert new_header == bytes([old_header[0] & ~0x0C]) + old_header[1:]  # EXIF, XMP flags off
    assert new_header[0] & 0x20  # the ICC flag stays
    assert after == {kind: body for kind, body in before.items() if kind not in (b"EXIF", b"XMP ")}
    assert decode(prepared.data).info["icc_profile"] == ICC_SRGB
    assert same_pixels(prepared.data, data)


def jpeg_with_metadata() -> bytes:
    return encode(marked(64, 48), "JPEG", exif=exif_bytes(gps=True), comment=b"home address")


def length_offsets(jpeg: bytes) -> list[int]:
    offsets, position = [], 2
    for _, payload in jpeg_segments(jpeg):
        offsets.append(position + 2)
        position += 4 + len(payload)
    return offsets


@pytest.mark.parametrize("offset", length_offsets(jpeg_with_metadata()))
def test_a_broken_jpeg_segment_length_falls_back_safely(offset: int) -> None:
    data = jpeg_with_metadata()
    (length,) = struct.unpack_from(">H", data, offset)
    for bad in (0, 1, 2, length - 1, length + 1, length + 7, 0xFFFF):
        broken = bytearray(data)
        struct.pack_into(">H", broken, offset, bad)
        try:
            prepared = prepare_image(bytes(broken))
        except NotAnImageError:
            continue
        assert decode(prepared.data).size == (prepared.width, prepared.height)
        assert b"PhoneCo" not in prepared.data


def test_junk_between_jpeg_segments_is_re_encoded_not_passed_on() -> None:
    data = jpeg_with_metadata()
    after_jfif = 2 + 4 + len(jpeg_segments(data)[0][1])
    prepared = prepare_image(data[:after_jfif] + b"\x00" + data[after_jfif:])
    assert prepared.format == "jpeg"
    assert scan_data(prepared.data) != scan_data(data)
    assert_no_metadata(prepared.data)


# --- transparency and other formats -------------------------------------------------------


def half_transparent(width: int, height: int) -> Image.Image:
    image = Image.new("RGBA", (width, height), (*BLUE, 255))
    image.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    return image


def test_a_png_with_transparency_stays_a_png_with_its_alpha() -> None:
    data = encode(half_transparent(100, 50), "PNG")
    prepared = prepare_image(data, ImageLimits(max_pixels=1250))
    result = decode(prepared.data)
    assert (prepared.format, result.mode) == ("png", "RGBA")
    assert result.width * result.height <= 1250
    assert pixel(result, 2, 2)[3] == 0
    assert pixel(result, result.width - 2, 2)[3] == 255


def test_a_png_with_an_opaque_alpha_channel_becomes_a_jpeg() -> None:
    data = encode(marked(100, 50).convert("RGBA"), "PNG")
    prepared = prepare_image(data, ImageLimits(max_pixels=1250))
    assert prepared.format == "jpeg"
    assert decode(prepared.data).mode == "RGB"


def test_transparency_too_large_for_a_png_is_flattened_onto_white() -> None:
    image = noise(300, 200, "RGBA")
    image.putalpha(Image.new("L", image.size, 255))
    image.paste((0, 0, 0, 0), (0, 0, 150, 200))
    data = encode(image, "PNG")
    prepared = prepare_image(data, ImageLimits(max_upload_bytes=60_000, max_pixels=50_000))
    result = decode(prepared.data)
    assert prepared.format == "jpeg"
    assert len(prepared.data) <= 60_000
    assert min(pixel(result, 5, 5)) > 240


OTHER_FORMATS: dict[str, tuple[Callable[[], bytes], str]] = {
    "bmp": (lambda: encode(marked(64, 48), "BMP"), "jpeg"),
    "tiff": (lambda: encode(marked(64, 48), "TIFF"), "jpeg"),
    "gif-one-frame": (lambda: encode(marked(64, 48).convert("P"), "GIF"), "jpeg"),
    "gif-transparent": (
        lambda: encode(half_transparent(64, 48).convert("P"), "GIF", transparency=0),
        "png",
    ),
}


@pytest.mark.parametrize("case", OTHER_FORMATS)
def test_other_formats_are_converted(case: str) -> None:
    make, expected_format = OTHER_FORMATS[case]
    prepared = prepare_image(make())
    result = decode(prepared.data)
    assert prepared.format == expected_format == str(result.format).lower()
    assert result.size == (prepared.width, prepared.height) == (64, 48)


# --- refusals -----------------------------------------------------------------------------

NOT_IMAGES: dict[str, Callable[[bytes], bytes]] = {
    "text": lambda _: b"Hello, this is a text file pretending to be portrait.jpg\n" * 20,
    "empty": lambda _: b"",
    "random": lambda _: np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes(),
    "truncated-jpeg": lambda portrait: portrait[: len(portrait) // 2],
    "jpeg-header-only": lambda portrait: portrait[:300],
    "png-signature-then-junk": lambda _: b"\x89PNG\r\n\x1a\n" + b"junk" * 40,
    "truncated-png": lambda _: encode(noise(64, 64), "PNG")[:5000],
    "truncated-webp": lambda _: encode(noise(64, 64), "WEBP")[:1000],
}


@pytest.mark.parametrize("case", NOT_IMAGES)
def test_what_is_not_a_readable_image_is_refused_plainly(case: str, portrait_bytes: bytes) -> None:
    with pytest.raises(NotAnImageError) as caught:
        prepare_image(NOT_IMAGES[case](portrait_bytes))
    message = str(caught.value)
    assert message in {
        "That file is not an image I can read (JPEG, PNG, WebP or HEIC).",
        "That image file is damaged or incomplete; please send it again.",
    }


def frames() -> list[Image.Image]:
    return [Image.new("RGB", (32, 32), color) for color in (RED, BLUE, (0, 255, 0))]


ANIMATED: dict[str, Callable[[], bytes]] = {
    "gif": lambda: encode(frames()[0], "GIF", save_all=True, append_images=frames()[1:]),
    "webp": lambda: encode(frames()[0], "WEBP", save_all=True, append_images=frames()[1:]),
    "apng": lambda: encode(frames()[0], "PNG", save_all=True, append_images=frames()[1:]),
}


@pytest.mark.parametrize("case", ANIMATED)
def test_animated_images_are_refused(case: str) -> None:
    with pytest.raises(AnimatedImageError, match="Animated images can't be retouched"):
        prepare_image(ANIMATED[case]())


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims another size (IHDR patched, CRC recomputed)."""
    png = bytearray(encode(Image.new("1", (1, 1)), "PNG"))
    struct.pack_into(">II", png, 16, width, height)
    struct.pack_into(">I", png, 29, zlib.crc32(png[12:29]))
    return bytes(png)


def test_a_decompression_bomb_is_refused_from_its_header(load_calls: list[str]) -> None:
    bomb = png_claiming(30_000, 30_000)
    assert len(bomb) < 100
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="too large"):
        prepare_image(bomb)
    assert time.perf_counter() - started < 1.0
    assert load_calls == []


def test_too_many_pixels_is_refused_before_decoding(load_calls: list[str]) -> None:
    data = encode(noise(400, 300), "PNG")
    with pytest.raises(ImageTooLargeError) as caught:
        prepare_image(data, ImageLimits(max_input_pixels=100_000))
    assert str(caught.value) == "That image is too large (0.12 megapixels); the limit is 0.1."
    assert load_calls == []


def test_too_many_bytes_is_refused_before_anything_else() -> None:
    with pytest.raises(ImageTooLargeError, match=r"too large \(0\.01 MB\); the limit is 0\.001"):
        prepare_image(b"\xff\xd8\xff" + bytes(10_000), ImageLimits(max_input_bytes=1_000))


# --- shrinking to fit ---------------------------------------------------------------------


def test_a_big_noisy_image_is_shrunk_until_it_fits_the_upload_limit() -> None:
    data = encode(noise(800, 600), "PNG")
    assert len(data) > 1_000_000
    prepared = prepare_image(data, ImageLimits(max_upload_bytes=200_000))
    assert prepared.format == "jpeg"
    assert len(prepared.data) <= 200_000
    result = decode(prepared.data)
    assert result.size == (prepared.width, prepared.height)
    assert prepared.width < 800
    assert abs(prepared.width / prepared.height - 800 / 600) < 0.02


def test_a_slightly_too_big_image_loses_quality_before_pixels() -> None:
    image = noise(300, 200)
    at_92, at_75 = (len(encode(image, "JPEG", quality=q)) for q in (92, 75))
    prepared = prepare_image(encode(image, "PNG"), ImageLimits(max_upload_bytes=at_75 + 10))
    assert at_92 > at_75 + 10
    assert (prepared.format, prepared.width, prepared.height) == ("jpeg", 300, 200)
    assert len(prepared.data) <= at_75 + 10


def test_max_pixels_is_respected_and_the_aspect_kept() -> None:
    data = encode(marked(1200, 500), "JPEG", quality=90)
    prepared = prepare_image(data, ImageLimits(max_pixels=60_000))
    assert prepared.width * prepared.height <= 60_000
    assert prepared.width * prepared.height > 55_000
    assert abs(prepared.width / prepared.height - 1200 / 500) < 0.02
    assert decode(prepared.data).size == (prepared.width, prepared.height)


def test_an_upload_limit_nothing_meets_is_refused_not_looped_on() -> None:
    with pytest.raises(ImageTooLargeError, match="can't be made small enough"):
        prepare_image(encode(noise(300, 200), "PNG"), ImageLimits(max_upload_bytes=100))


def test_limits_come_from_the_settings() -> None:
    limits = ImageLimits.from_settings(
        load_settings(
            image_max_input_bytes=1,
            image_max_input_pixels=2,
            image_max_upload_bytes=3,
            image_max_pixels=4,
        )
    )
    assert limits == ImageLimits(1, 2, 3, 4)


# --- fitting results for a chat upload ----------------------------------------------------


def test_fit_for_upload_passes_a_fitting_image_through(portrait_bytes: bytes) -> None:
    prepared = fit_for_upload(portrait_bytes, max_bytes=10_000_000, max_side_sum=10_000)
    assert prepared.data is portrait_bytes


def test_fit_for_upload_shrinks_an_image_over_the_side_sum() -> None:
    data = encode(marked(9_000, 1_500), "JPEG", quality=80)
    prepared = fit_for_upload(data, max_bytes=10_000_000, max_side_sum=10_000)
    assert prepared.width + prepared.height <= 10_000
    assert prepared.width + prepared.height > 9_900
    assert decode(prepared.data).size == (prepared.width, prepared.height)


def test_fit_for_upload_shrinks_to_the_byte_limit() -> None:
    data = encode(noise(600, 400), "PNG")
    prepared = fit_for_upload(data, max_bytes=100_000)
    assert prepared.format == "jpeg"
    assert len(prepared.data) <= 100_000


def test_fit_for_upload_leaves_an_unfixable_aspect_ratio_to_the_caller() -> None:
    data = encode(marked(2_100, 100), "PNG")
    prepared = fit_for_upload(data, max_bytes=1_000, max_ratio=20)
    assert prepared.data is data
    assert (prepared.width, prepared.height) == (2_100, 100)


def test_fit_for_upload_blames_the_backend_for_a_non_image() -> None:
    with pytest.raises(ResultInvalidError):
        fit_for_upload(b"<html>expired</html>", max_bytes=10_000_000)


# --- property -----------------------------------------------------------------------------


@st.composite
def png_images(draw: st.DrawFn) -> tuple[bytes, int, int]:
    width, height = draw(st.sampled_from([(1, 1), (2, 7), (16, 9), (33, 20)]))
    pixels = draw(hnp.arrays(np.uint8, (height, width, 3)))
    return encode(Image.fromarray(pixels, "RGB"), "PNG"), width, height


# The suite's autouse fixture (chdir, env) is per test, not per example: harmless to share.
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(image=png_images(), max_pixels=st.integers(1, 700))
def test_prepared_images_are_what_they_say(image: tuple[bytes, int, int], max_pixels: int) -> None:
    data, width, height = image
    prepared = prepare_image(data, ImageLimits(max_pixels=max_pixels))
    assert sniff_format(prepared.data) == prepared.format
    assert decode(prepared.data).size == (prepared.width, prepared.height)
    assert prepared.width * prepared.height <= max_pixels
    if width * height <= max_pixels:
        assert prepared.data is data
