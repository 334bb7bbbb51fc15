"""Which files `retouch-bot retouch` reads and where each result goes, decided before any work.

Rules, so that no file is ever lost: `-o` names a file only for one input file (its ending picks
JPEG, PNG or WebP); otherwise it is a folder, and a file-like name is refused. Results go beside
their photos as NAME-retouched, or into the `-o` folder under their own names, sub-folders
mirrored (and each input's folder name first when there are several inputs). No result takes
the name of an input or of another result: a clash gets `-2`, `-3`... Earlier results
(`*-retouched.*`) are passed over unless `force`; so is the `-o` folder inside an input folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bots.photo_output import SUFFIX_FORMATS, OutputFormat, output_format

PHOTO_SUFFIXES: Final = frozenset({*SUFFIX_FORMATS, ".heic", ".heif", ".bmp", ".tif", ".tiff"})
"""The file endings looked at in a folder (a file named on the command line is tried anyway)."""
RESULT_MARK: Final = "-retouched"
_RESULT_STEM: Final = re.compile(rf"{RESULT_MARK}(-\d+)?$")


class InputError(Exception):
    """A command line that cannot be carried out as asked (missing input, file-like `-o`...)."""


@dataclass(frozen=True, slots=True)
class Task:
    """One photo: where it is read from, where its result is written, in which format."""

    source: Path
    target: Path
    format: OutputFormat


@dataclass(frozen=True, slots=True)
class Plan:
    tasks: list[Task]
    skipped: list[Path] = field(default_factory=list)
    """Earlier results passed over (`*-retouched.*`)."""


@dataclass(frozen=True, slots=True)
class _Found:
    source: Path
    relative: Path
    """The path under the input folder it was found in (its name, when named itself)."""
    folder: Path | None
    """The input folder it was found in; None for a file named on the command line."""


def is_result(path: Path) -> bool:
    """Whether `path` is named like a result of this command (`photo-retouched.jpg`, `-2`...)."""
    return bool(_RESULT_STEM.search(path.stem))


def plan(
    inputs: Sequence[Path], output: str | None, *, recursive: bool = False, force: bool = False
) -> Plan:
    """The tasks for `inputs` and `-o output`; `InputError` when the command line won't do."""
    out = Path(output) if output else None
    found = _once([item for path in inputs for item in _expand(path, out, recursive)])
    into_file = _output_is_a_file(inputs, output)
    skipped = [item.source for item in found if not force and is_result(item.source)]
    kept = [item for item in found if force or not is_result(item.source)]
    if into_file:
        assert out is not None
        fmt = output_format(out.suffix)
        assert fmt is not None
        if kept and out.exists() and out.samefile(kept[0].source):
            raise InputError(f"-o {output} is the input itself; give the result another name")
        return Plan([Task(item.source, out, fmt) for item in kept], skipped)
    taken = {_key(item.source) for item in kept}
    tasks = []
    for item in kept:
        target, fmt = _target(item, out, several=len(inputs) > 1)
        target = _unique(target, taken)
        taken.add(_key(target))
        tasks.append(Task(item.source, target, fmt))
    return Plan(tasks, skipped)


def _once(found: list[_Found]) -> list[_Found]:
    """Each photo once, however many inputs name it."""
    first: dict[tuple[int, int], _Found] = {}
    for item in found:
        stat = item.source.stat()
        first.setdefault((stat.st_dev, stat.st_ino), item)
    return list(first.values())


def _output_is_a_file(inputs: Sequence[Path], output: str | None) -> bool:
    """Whether `-o` names the result file; refuses what is neither a usable file nor a folder."""
    if not output:
        return False
    out = Path(output)
    folder_like = output.endswith(("/", os.sep)) or out.is_dir()
    one_file = len(inputs) == 1 and inputs[0].is_file()
    if one_file and not folder_like and out.suffix:
        if output_format(out.suffix) is None:
            raise InputError(
                f"-o {output}: cannot write {out.suffix} files; end the name in .jpg, .png or .webp"
            )
        return True
    if not folder_like and out.suffix.lower() in PHOTO_SUFFIXES:
        what = "the input is a folder" if len(inputs) == 1 else f"there are {len(inputs)} inputs"
        raise InputError(
            f"-o {output} names one file, but {what}; "
            f"give a folder instead, e.g. -o {out.with_suffix('')}/"
        )
    if out.exists() and not out.is_dir():
        raise InputError(f"-o {output} is a file, not a folder")
    return False


def _expand(path: Path, out: Path | None, recursive: bool) -> Iterator[_Found]:
    if path.is_file():
        yield _Found(path, Path(path.name), None)
        return
    if not path.is_dir():
        raise InputError(f"{path}: no such file or folder")
    photos = sorted(_photos_in(path, out, recursive))
    if not photos:
        deeper = not recursive and any(_photos_in(path, out, recursive=True))
        hint = " (there are some in its sub-folders: add --recursive)" if deeper else ""
        raise InputError(f"{path}: no photos in this folder{hint}")
    for photo in photos:
        yield _Found(photo, photo.relative_to(path), path)


def _photos_in(folder: Path, out: Path | None, recursive: bool) -> Iterator[Path]:
    """Photo files in `folder` (and below, if `recursive`), hidden ones and the `-o` folder
    left out."""
    skip = _key(out) if out is not None and _key(out) != _key(folder) else None
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if recursive and _key(entry) != skip:
                yield from _photos_in(entry, out, recursive)
        elif entry.suffix.lower() in PHOTO_SUFFIXES and entry.is_file():
            yield entry


def _target(item: _Found, out: Path | None, *, several: bool) -> tuple[Path, OutputFormat]:
    """Where a photo's result goes in folder mode, in its own format if we can write that."""
    if out is None:
        folder = item.source.parent
    elif several and item.folder is not None:
        folder = out / item.folder.resolve().name / item.relative.parent
    else:
        folder = out / item.relative.parent
    fmt = output_format(item.source.suffix)
    suffix = item.source.suffix if fmt is not None else ".jpg"
    beside = _key(folder) == _key(item.source.parent)
    stem = item.source.stem + (RESULT_MARK if beside else "")
    return folder / f"{stem}{suffix}", fmt or "jpeg"


def _unique(target: Path, taken: set[str]) -> Path:
    """`target`, or `NAME-2.ext`, `NAME-3.ext`... the first no input or other result has."""
    candidate, number = target, 2
    while _key(candidate) in taken:
        candidate = target.with_name(f"{target.stem}-{number}{target.suffix}")
        number += 1
    return candidate


def _key(path: Path) -> str:
    """One spelling per file, the same on a case-insensitive file system."""
    return os.path.normcase(path.resolve()).casefold()
