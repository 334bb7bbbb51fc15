"""The one way a benchmark publishes its report: JSON to its results file and to stdout."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import cv2


def publish(report: dict[str, Any], out: Path) -> None:
    """Write `report` as indented JSON to `out` (folders made as needed) and print it."""
    text = json.dumps(report, indent=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)


def engine_machine() -> dict[str, Any]:
    """What the engine benchmarks ran on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "note": "shared machine: other test runs may add noise",
    }
