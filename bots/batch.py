"""`retouch-bot retouch`: photo files through the core, concurrently, one line per failure."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core.backend import RetouchBackend, open_backend
from core.captions import parse_fidelity
from core.errors import RetouchError
from core.formats import EXTENSIONS, sniff_format
from core.imaging import ImageLimits
from core.pipeline import retouch_photo_reported
from core.settings import Settings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff"}
DEFAULT_JOBS = 4


@dataclass(frozen=True, slots=True)
class Task:
    source: Path
    target: Path | None
    """Where to write; None means beside the source, named after the result's format."""


class InputError(Exception):
    """A command-line input that cannot be used (missing file, empty folder)."""


async def run_batch(
    settings: Settings,
    inputs: list[Path],
    output: Path | None,
    fidelity_text: str | None,
    jobs: int | None,
) -> int:
    """Retouch every input; exit 0 when all worked, 2 when any input was bad, 1 otherwise."""
    try:
        fidelity = (
            parse_fidelity(fidelity_text) if fidelity_text else settings.retouch_default_fidelity
        )
        tasks = plan(inputs, output)
    except (RetouchError, InputError) as exc:
        print(f"retouch-bot: {exc}", file=sys.stderr)
        return 2

    limits = ImageLimits.from_settings(settings)
    slots = asyncio.Semaphore(max(1, jobs or DEFAULT_JOBS))
    codes: list[int] = []
    async with open_backend(settings) as backend:
        with tqdm(total=len(tasks), unit="photo", disable=len(tasks) < 2, file=sys.stderr) as bar:

            async def one(task: Task) -> None:
                async with slots:
                    code = await _retouch_one(backend, task, fidelity, limits, bar)
                codes.append(code)
                bar.update()

            await asyncio.gather(*(one(task) for task in tasks))
    return max(codes, default=0)


def plan(inputs: list[Path], output: Path | None) -> list[Task]:
    """Expand folders and decide each output path; an output with a suffix names one file."""
    sources: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"{path}: no photos in this folder")
            sources.extend(found)
        elif path.is_file():
            sources.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    single_file = len(sources) == 1 and output is not None and output.suffix and not output.is_dir()
    if single_file:
        assert output is not None
        output.parent.mkdir(parents=True, exist_ok=True)
        return [Task(sources[0], output)]
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
    return [Task(s, None if output is None else output / s.name) for s in sources]


async def _retouch_one(
    backend: RetouchBackend, task: Task, fidelity: float, limits: ImageLimits, bar: tqdm[Any]
) -> int:
    started = time.perf_counter()
    try:
        data = await asyncio.to_thread(task.source.read_bytes)
        result, report = await retouch_photo_reported(backend, data, fidelity, limits)
        target = _target_path(task, result)
        await asyncio.to_thread(target.write_bytes, result)
    except RetouchError as exc:
        bar.write(f"{task.source}: {exc}", file=sys.stderr)
        return 2 if exc.user_fault else 1
    except OSError as exc:
        bar.write(f"{task.source}: {exc.filename or ''} {exc.strerror or exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    found = f", {report.describe()}" if report is not None else ""
    bar.write(f"{task.source} -> {target} (fidelity {fidelity:g}, {seconds:.2f} s{found})")
    return 0


def _target_path(task: Task, result: bytes) -> Path:
    """The output path, its extension matching the format the backend returned."""
    fmt = sniff_format(result) or "jpeg"
    suffix = EXTENSIONS[fmt]
    if task.target is None:
        return task.source.with_name(f"{task.source.stem}-retouched{suffix}")
    if sniff_format_of_suffix(task.target.suffix) == fmt:
        return task.target
    return task.target.with_suffix(suffix)


def sniff_format_of_suffix(suffix: str) -> str | None:
    """The format a file name's extension announces (`.jpeg` and `.jpg` alike)."""
    suffix = suffix.lower().replace(".jpeg", ".jpg").replace(".tiff", ".tif")
    return next((fmt for fmt, ext in EXTENSIONS.items() if ext == suffix), None)
