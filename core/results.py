"""Finished results on disk: each job's image is kept until its delivery succeeds, so a failed
upload is retried (after a restart too) and nothing is lost when the upstream URL expires."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from pathlib import Path

from core.formats import EXTENSIONS, sniff_format


class ResultFiles:
    """One folder of results named by job id; every file operation runs off the event loop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def create_folder(self) -> None:
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)

    async def save(self, job_id: str, result: bytes) -> Path:
        """Write `result` whole (never a half-written file under the final name)."""
        return await asyncio.to_thread(self._save, job_id, result)

    async def load(self, path: str) -> bytes | None:
        """A stored result, or None when it was lost."""
        try:
            return await asyncio.to_thread(Path(path).read_bytes)
        except OSError:
            return None

    async def exists(self, path: str | None) -> bool:
        return path is not None and await asyncio.to_thread(Path(path).exists)

    async def discard(self, paths: Iterable[str | Path]) -> None:
        """Delete results no longer needed; ones already gone are no error."""
        await asyncio.to_thread(_unlink_all, [Path(p) for p in paths])

    async def sweep(self, keep: Iterable[str], older_than: float) -> int:
        """Delete files modified before `older_than` (unix time), but the results in `keep`."""
        names = {Path(path).name for path in keep}
        return await asyncio.to_thread(_sweep, self.directory, names, older_than)

    def _save(self, job_id: str, result: bytes) -> Path:
        fmt = sniff_format(result) or "jpeg"
        path = self.directory / f"{job_id}{EXTENSIONS[fmt]}"
        partial = path.with_suffix(".part")
        partial.write_bytes(result)
        partial.replace(path)
        return path


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _sweep(folder: Path, keep: set[str], cutoff: float) -> int:
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        if path.name in keep or not path.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed
