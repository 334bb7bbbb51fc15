"""`retouch-bot retouch` in process, on a stand-in backend: which files it writes, and how.

The rules of `bots.batch_plan` (names, folders, clashes, skips) and `bots.photo_output`
(formats, quality, the capture date), each with the case that used to lose or misname a file.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import ExifTags, Image

from bots.batch import BatchOptions, run_batch
from core.backend import RetouchBackend
from core.formats import PreparedImage, sniff_format
from core.settings import Settings, load_settings
from tests.service_fakes import EchoBackend

TAKEN = "2021:06:05 14:03:59"


def photo(path: str, fmt: str = "JPEG", colour: tuple[int, int, int] = (200, 150, 120)) -> Path:
    """A small image file (no face needed: the backend here only echoes)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), colour).save(target, format=fmt)
    return target


def serving(backend: RetouchBackend) -> Callable[[Settings], AbstractAsyncContextManager[Any]]:
    @asynccontextmanager
    async def open_with(_: Settings) -> AsyncIterator[RetouchBackend]:
        yield backend

    return open_with


async def retouch(
    capsys: pytest.CaptureFixture[str],
    *inputs: str,
    backend: RetouchBackend | None = None,
    settings: Settings | None = None,
    clock: Callable[[], float] | None = None,
    **options: Any,
) -> tuple[int, list[str], list[str]]:
    """Run the command; its exit code, stdout lines and stderr lines."""
    code = await run_batch(
        settings or load_settings(retouch_backend="local", engine_threads=2),
        BatchOptions([Path(p) for p in inputs], **options),
        open_with=serving(backend or EchoBackend()),
        **({"clock": clock} if clock else {}),
    )
    out, err = capsys.readouterr()
    said = [line.strip() for line in re.split(r"[\r\n]", err)]
    return code, out.splitlines(), [line for line in said if line and "photo/s]" not in line]


def read(path: str) -> bytes:
    return Path(path).read_bytes()


def write(path: str, data: bytes) -> None:
    Path(path).write_bytes(data)


def files(folder: str = ".") -> list[str]:
    return sorted(str(p) for p in Path(folder).rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("name", "expected"),
    [("out.png", "png"), ("out.webp", "webp"), ("out.jpg", "jpeg"), ("OUT.JPEG", "jpeg")],
)
async def test_the_output_format_follows_the_name(
    capsys: pytest.CaptureFixture[str], name: str, expected: str
) -> None:
    photo("in.jpg")
    code, out, _ = await retouch(capsys, "in.jpg", output=name)
    assert code == 0
    assert sniff_format(read(name)) == expected
    assert files() == sorted(["in.jpg", name])
    assert out[0].startswith(f"in.jpg -> {name} (fidelity 0.1, ")


async def test_a_result_in_the_asked_format_is_written_as_made(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Recording(EchoBackend):
        made: bytes = b""

        async def retouch(self, image: PreparedImage, fidelity: float) -> bytes:
            self.made = await super().retouch(image, fidelity)
            return self.made

    backend = Recording()
    photo("in.jpg")
    assert (await retouch(capsys, "in.jpg", output="out.jpg", backend=backend))[0] == 0
    assert read("out.jpg") == backend.made  # no second lossy encoding


async def test_quality_applies_to_lossy_formats(capsys: pytest.CaptureFixture[str]) -> None:
    noisy = Image.effect_noise((256, 256), 60).convert("RGB")
    noisy.save("in.png")
    for quality in (30, 90):
        code, _, _ = await retouch(capsys, "in.png", output=f"q{quality}.webp", quality=quality)
        assert code == 0
    assert len(read("q30.webp")) < len(read("q90.webp")) * 0.8


@pytest.mark.parametrize(
    ("inputs", "output", "said"),
    [
        (("a.jpg", "b.jpg"), "x.jpg", "-o x.jpg names one file, but there are 2 inputs;"),
        (("album",), "x.png", "-o x.png names one file, but the input is a folder;"),
        (("a.jpg",), "a.gif", "-o a.gif: cannot write .gif files; end the name in .jpg,"),
        (("a.jpg",), "a.jpg", "-o a.jpg is the input itself; give the result another name"),
        (("a.jpg", "b.jpg"), "taken", "-o taken is a file, not a folder"),
        (("missing.jpg",), "out.jpg", "missing.jpg: no such file or folder"),
    ],
)
async def test_an_output_that_would_lose_files_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], inputs: tuple[str, ...], output: str, said: str
) -> None:
    photo("a.jpg")
    photo("b.jpg")
    photo("album/c.jpg")
    write("taken", b"a file already has this name\n")
    before = files()
    code, out, err = await retouch(capsys, *inputs, output=output)
    assert (code, out) == (2, [])
    assert err == [f"retouch-bot: {said}" + err[0].removeprefix(f"retouch-bot: {said}")]
    assert files() == before  # nothing written, no folder named like a file


async def test_two_folders_into_one_keep_every_photo(capsys: pytest.CaptureFixture[str]) -> None:
    photo("a/photo.jpg", colour=(10, 20, 30))
    photo("b/photo.jpg", colour=(200, 210, 220))
    code, out, _ = await retouch(capsys, "a", "b", output="merged")
    assert code == 0
    assert files("merged") == ["merged/a/photo.jpg", "merged/b/photo.jpg"]
    assert read("merged/a/photo.jpg") != read("merged/b/photo.jpg")
    assert out[-1].startswith("2 done, 0 failed, 0 skipped in ")


async def test_names_that_would_clash_are_numbered(capsys: pytest.CaptureFixture[str]) -> None:
    photo("x/photo.jpg")
    photo("y/photo.jpg")
    photo("album/face.jpg")
    photo("album/face.bmp", fmt="BMP")  # written as JPEG: face-retouched.jpg, taken
    photo("album/Smile.jpg")
    photo("album/smile.jpg")  # one file with Smile.jpg on a case-insensitive disk
    assert (await retouch(capsys, "x/photo.jpg", "y/photo.jpg", output="out"))[0] == 0
    assert files("out") == ["out/photo-2.jpg", "out/photo.jpg"]
    assert (await retouch(capsys, "album"))[0] == 0
    made = [name for name in files("album") if "-retouched" in name]
    assert made == [
        "album/Smile-retouched.jpg",
        "album/face-retouched-2.jpg",
        "album/face-retouched.jpg",
        "album/smile-retouched-2.jpg",
    ]
    assert sniff_format(read("album/face-retouched-2.jpg")) == "jpeg"


async def test_a_second_run_skips_the_first_ones_results(
    capsys: pytest.CaptureFixture[str],
) -> None:
    photo("album/photo.jpg")
    photo("album/photo.png", fmt="PNG")
    assert (await retouch(capsys, "album"))[0] == 0
    code, out, _ = await retouch(capsys, "album")
    assert code == 0
    assert out[0] == "skipping 2 earlier results (*-retouched.*); --force retouches them too"
    assert out[-1].startswith("2 done, 0 failed, 2 skipped in ")
    assert files("album") == [
        "album/photo-retouched.jpg",
        "album/photo-retouched.png",
        "album/photo.jpg",
        "album/photo.png",
    ]
    # --force takes them as photos, and still overwrites no input.
    code, out, _ = await retouch(capsys, "album/photo.jpg", "album", force=True)
    assert code == 0 and out[-1].startswith("4 done, 0 failed, 0 skipped in ")
    assert files("album") == [
        "album/photo-retouched-2.jpg",
        "album/photo-retouched-2.png",
        "album/photo-retouched-retouched.jpg",
        "album/photo-retouched-retouched.png",
        "album/photo-retouched.jpg",
        "album/photo-retouched.png",
        "album/photo.jpg",
        "album/photo.png",
    ]


async def test_recursive_mirrors_sub_folders_and_leaves_its_output_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    photo("album/top.jpg")
    photo("album/2020/summer/beach.jpg")
    photo("album/.thumbnails/top.jpg")  # hidden: not a photo of the album
    code, _, err = await retouch(capsys, "album/2020")
    assert code == 2
    assert err == [
        "retouch-bot: album/2020: no photos in this folder"
        " (there are some in its sub-folders: add --recursive)"
    ]
    assert (await retouch(capsys, "album", output="album/retouched"))[0] == 0
    assert files("album/retouched") == ["album/retouched/top.jpg"]
    for _ in range(2):  # the second time, album/retouched is not taken for input
        code, out, _ = await retouch(capsys, "album", output="album/retouched", recursive=True)
        assert code == 0 and out[-1].startswith("2 done, 0 failed, 0 skipped")
    assert files("album/retouched") == [
        "album/retouched/2020/summer/beach.jpg",
        "album/retouched/top.jpg",
    ]


async def test_output_into_the_input_folder_names_results_as_beside(
    capsys: pytest.CaptureFixture[str],
) -> None:
    photo("album/photo.jpg")
    assert (await retouch(capsys, "album", output="album/"))[0] == 0
    assert files("album") == ["album/photo-retouched.jpg", "album/photo.jpg"]


class OneEngineThread(EchoBackend):
    """A backend that, like the local engine with one thread, works on one photo at a time,
    each taking 5 s of `clock`."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.clock = clock
        self.lock = asyncio.Lock()

    async def retouch(self, image: PreparedImage, fidelity: float) -> bytes:
        async with self.lock:
            self.clock[0] += 5.0
            return await super().retouch(image, fidelity)


async def test_each_photo_is_timed_on_its_own_and_the_run_ends_with_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("a", "b", "c"):
        photo(f"album/{name}.jpg")
    write("album/d.jpg", b"not a photo")
    clock = [100.0]
    code, out, err = await retouch(
        capsys,
        "album",
        output="out",
        jobs=3,
        backend=OneEngineThread(clock),
        settings=load_settings(retouch_backend="local", engine_threads=1),
        clock=lambda: clock[0],
    )
    assert code == 2
    assert sorted(out[:-1]) == [
        f"album/{name}.jpg -> out/{name}.jpg (fidelity 0.1, 5.00 s)" for name in ("a", "b", "c")
    ]
    assert out[-1] == "3 done, 1 failed, 0 skipped in 15.00 s"
    assert [line.split(":")[0] for line in err] == ["album/d.jpg"]


def exif_of(path: str) -> tuple[dict[int, Any], dict[int, Any], dict[int, Any]]:
    with Image.open(path) as image:
        exif = image.getexif()
        return dict(exif), dict(exif.get_ifd(ExifTags.IFD.Exif)), dict(exif.get_ifd(0x8825))


@pytest.mark.parametrize("ending", [".jpg", ".png", ".webp"])
async def test_keep_date_copies_the_capture_date_and_nothing_else(
    capsys: pytest.CaptureFixture[str], ending: str
) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Phone Maker"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = TAKEN
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] = "N"
    Image.new("RGB", (64, 48), "tan").save("in.jpg", exif=exif.tobytes())
    assert (await retouch(capsys, "in.jpg", output=f"plain{ending}"))[0] == 0
    assert exif_of(f"plain{ending}") == ({}, {}, {})
    assert (await retouch(capsys, "in.jpg", output=f"dated{ending}", keep_date=True))[0] == 0
    top, inner, gps = exif_of(f"dated{ending}")
    assert set(top) == {ExifTags.IFD.Exif} and gps == {}
    assert inner == {ExifTags.Base.DateTimeOriginal: TAKEN}


async def test_keep_date_on_a_photo_without_one_writes_none(
    capsys: pytest.CaptureFixture[str],
) -> None:
    photo("in.jpg")
    assert (await retouch(capsys, "in.jpg", output="out.jpg", keep_date=True))[0] == 0
    assert exif_of("out.jpg") == ({}, {}, {})


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"quality": 0}, "--quality 0: must be 1 to 100"),
        ({"quality": 101}, "--quality 101: must be 1 to 100"),
        ({"jobs": 0}, "--jobs 0: must be 1 or more"),
        ({"fidelity": "7"}, "out of range"),
    ],
)
async def test_bad_options_are_one_line(
    capsys: pytest.CaptureFixture[str], options: dict[str, Any], said: str
) -> None:
    photo("in.jpg")
    code, out, err = await retouch(capsys, "in.jpg", **options)
    assert (code, out, len(err)) == (2, [], 1)
    assert said in err[0]
    assert files() == ["in.jpg"]


def test_result_names_are_recognised() -> None:
    from bots.batch_plan import is_result

    for name in ("a-retouched.jpg", "a-retouched-2.png", "x-retouched-retouched.webp"):
        assert is_result(Path(name)), name
    for name in ("a.jpg", "retouched.jpg", "a-retouched-x.jpg", "a-retouchedd.jpg"):
        assert not is_result(Path(name)), name


@pytest.mark.parametrize(("output", "written"), [("out", "out/in.jpg"), ("v1.2/", "v1.2/in.jpg")])
async def test_an_output_without_an_image_ending_is_a_folder(
    capsys: pytest.CaptureFixture[str], output: str, written: str
) -> None:
    photo("in.jpg")
    code, out, _ = await retouch(capsys, "in.jpg", output=output)
    assert code == 0
    assert files() == sorted(["in.jpg", written])
    assert out[0].startswith(f"in.jpg -> {written} ")
