"""The array types the engine works in, and the one check of what callers hand it."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

RGBImage = npt.NDArray[np.uint8]
FloatImage = npt.NDArray[np.float32]
Points = npt.NDArray[np.float32]
"""An N x 2 array of (x, y) pixel positions."""


def f32(image: Any) -> FloatImage:
    """An OpenCV or numpy result typed as the float32 array it is (no copy when it is one)."""
    return np.asarray(image, dtype=np.float32)


def check_rgb(rgb: npt.NDArray[Any]) -> None:
    """Refuse anything but a uint8 HxWx3 array: the engine's one input type."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 RGB array, got {rgb.dtype} {rgb.shape}")
