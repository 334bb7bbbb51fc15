"""serve-api's result files: written under unguessable names, served until they expire."""

from __future__ import annotations

import math
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Final

from core.errors import BackendError
from core.formats import EXTENSIONS, MIME_TYPES, sniff_format

_RESULT_NAME = re.compile(r"^[A-Za-z0-9_-]{32}\.(?:jpg|png|webp)$")
_RESULT_FORMATS: Final = ("jpeg", "png", "webp")
_RESULT_MIME: Final = {EXTENSIONS[f]: MIME_TYPES[f] for f in _RESULT_FORMATS}


class ResultStore:
    """Result images under unguessable names; a file's mtime is its creation time on `clock`."""

    def __init__(self, directory: Path, ttl_seconds: float, clock: Callable[[], float]) -> None:
        self.directory = directory
        self.ttl = ttl_seconds
        self.clock = clock

    def save(self, data: bytes) -> str:
        """Write `data` (sync, run it in a thread) and return its file name."""
        fmt = sniff_format(data)
        if fmt is None or fmt not in _RESULT_FORMATS:
            raise BackendError("The engine produced no image.")
        name = secrets.token_urlsafe(24) + EXTENSIONS[fmt]
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{name}.tmp"
        temporary.write_bytes(data)
        now = self.clock()
        os.utime(temporary, (now, now))
        os.replace(temporary, self.directory / name)  # never serve a half-written file
        return name

    def open(self, name: str) -> tuple[Path, str, int] | None:
        """(path, MIME type, seconds left) of a live result; an expired one is deleted."""
        if not _RESULT_NAME.fullmatch(name):
            return None
        path = self.directory / name
        try:
            created = path.stat().st_mtime
        except OSError:
            return None
        left = created + self.ttl - self.clock()
        if left <= 0:
            path.unlink(missing_ok=True)
            return None
        return path, _RESULT_MIME[path.suffix], math.ceil(left)

    def sweep(self) -> int:
        """Delete expired results and stale partial writes; returns how many went."""
        if not self.directory.is_dir():
            return 0
        now = self.clock()
        removed = 0
        for entry in os.scandir(self.directory):
            temporary = entry.name.startswith(".") and entry.name.endswith(".tmp")
            if not (_RESULT_NAME.fullmatch(entry.name) or temporary):
                continue
            try:
                expired = entry.stat().st_mtime + self.ttl <= now
                if expired:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
