"""`retouch-bot retouch`: photo files through the core, concurrently, one line per photo.

What is read and written where is `bots.batch_plan`'s; this runs the plan, writes each result
(in the format its name asks, see `bots.photo_output`) and ends with a summary line.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bots.atomic import write_atomically
from bots.batch_plan import InputError, Task, plan
from bots.photo_output import capture_date, encode_result
from core.backend import RetouchBackend, open_backend
from core.captions import parse_fidelity
from core.errors import RetouchError
from core.imaging import ImageLimits
from core.pipeline import retouch_photo_reported
from core.settings import Settings

DEFAULT_JOBS = 4
"""Photos at once with the hosted API; the local engine runs as many as it has threads."""

OpenBackend = Callable[[Settings], AbstractAsyncContextManager[RetouchBackend]]


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """The command line of `retouch-bot retouch`."""

    inputs: list[Path]
    output: str | None = None
    fidelity: str | None = None
    jobs: int | None = None
    recursive: bool = False
    force: bool = False
    quality: int | None = None
    keep_date: bool = False


@dataclass(frozen=True, slots=True)
class _Run:
    """What every photo of one run shares."""

    backend: RetouchBackend
    fidelity: float
    limits: ImageLimits
    options: BatchOptions
    clock: Callable[[], float]
    bar: tqdm[Any]


async def run_batch(
    settings: Settings,
    options: BatchOptions,
    *,
    open_with: OpenBackend = open_backend,
    clock: Callable[[], float] = time.perf_counter,
) -> int:
    """Retouch every input; exit 0 when all worked, 2 when any input was bad, 1 otherwise."""
    started = clock()
    try:
        if options.quality is not None and not 1 <= options.quality <= 100:
            raise InputError(f"--quality {options.quality}: must be 1 to 100")
        if options.jobs is not None and options.jobs < 1:
            raise InputError(f"--jobs {options.jobs}: must be 1 or more")
        fidelity = (
            parse_fidelity(options.fidelity)
            if options.fidelity
            else settings.retouch_default_fidelity
        )
        work = await asyncio.to_thread(
            plan, options.inputs, options.output, recursive=options.recursive, force=options.force
        )
    except (RetouchError, InputError) as exc:
        print(f"retouch-bot: {exc}", file=sys.stderr)
        return 2
    if work.skipped:
        count = len(work.skipped)
        print(
            f"skipping {count} earlier result{'s' if count != 1 else ''} (*-retouched.*); "
            "--force retouches them too"
        )
    slots = asyncio.Semaphore(_photos_at_once(settings, options.jobs))
    outcomes: Counter[int] = Counter()
    async with open_with(settings) as backend:
        with (
            _engine_log_quieted(),
            tqdm(
                total=len(work.tasks), unit="photo", disable=len(work.tasks) < 2, file=sys.stderr
            ) as bar,
        ):
            run = _Run(backend, fidelity, ImageLimits.from_settings(settings), options, clock, bar)

            async def one(task: Task) -> None:
                async with slots:
                    outcomes[await _retouch_one(run, task)] += 1
                bar.update()

            await asyncio.gather(*(one(task) for task in work.tasks))
    failed = outcomes[1] + outcomes[2]
    print(
        f"{outcomes[0]} done, {failed} failed, {len(work.skipped)} skipped "
        f"in {clock() - started:.2f} s"
    )
    return max(outcomes, default=0)


@contextmanager
def _engine_log_quieted() -> Iterator[None]:
    """Each photo's line names the faces found: the engine's INFO line would say it again."""
    engine = logging.getLogger("retouch.engine")
    level = engine.level
    if engine.getEffectiveLevel() == logging.INFO:
        engine.setLevel(logging.WARNING)
    try:
        yield
    finally:
        engine.setLevel(level)


def _photos_at_once(settings: Settings, jobs: int | None) -> int:
    """`-j`, but never more than the local engine's threads: more would only wait for one."""
    if settings.effective_backend == "local":
        threads = settings.engine_thread_count
        return min(jobs or threads, threads)
    return jobs or DEFAULT_JOBS


async def _retouch_one(run: _Run, task: Task) -> int:
    """One photo, timed from when it starts (not while it waits for a slot); its exit code."""
    started = run.clock()
    try:
        data = await asyncio.to_thread(task.source.read_bytes)
        result, report = await retouch_photo_reported(run.backend, data, run.fidelity, run.limits)
        await asyncio.to_thread(_write, task, data, result, run.options)
    except RetouchError as exc:
        run.bar.write(f"{task.source}: {exc}", file=sys.stderr)
        return 2 if exc.user_fault else 1
    except OSError as exc:
        run.bar.write(f"{task.source}: {exc.filename or ''} {exc.strerror or exc}", file=sys.stderr)
        return 1
    seconds = run.clock() - started
    found = f", {report.describe()}" if report is not None else ""
    run.bar.write(
        f"{task.source} -> {task.target} (fidelity {run.fidelity:g}, {seconds:.2f} s{found})"
    )
    return 0


def _write(task: Task, photo: bytes, result: bytes, options: BatchOptions) -> None:
    taken = capture_date(photo) if options.keep_date else None
    encoded = encode_result(result, task.format, quality=options.quality, taken=taken)
    write_atomically(task.target, [encoded])
