"""The few filters the retouch steps share, on float32 images."""

from __future__ import annotations

import cv2
import numpy as np

from core.engine.arrays import FloatImage, f32


def blur(image: FloatImage, sigma: float) -> FloatImage:
    """A Gaussian blur of `sigma` px (reflected at the borders)."""
    return f32(cv2.GaussianBlur(image, (0, 0), max(0.3, sigma), borderType=cv2.BORDER_REFLECT))


def box(image: FloatImage, radius: int) -> FloatImage:
    side = 2 * radius + 1
    return f32(cv2.boxFilter(image, -1, (side, side), borderType=cv2.BORDER_REFLECT))


def guided(image: FloatImage, radius: float, eps: float) -> FloatImage:
    """He's self-guided filter: flat areas are averaged over `radius`, edges of contrast (0..1)
    well over `eps` are kept."""
    r = max(1, round(radius))
    mean = box(image, r)
    var = box(image * image, r) - mean * mean
    a = f32(var / (var + np.float32(eps * eps)))
    b = mean - a * mean
    return box(a, r) * image + box(b, r)


def luma(image: FloatImage) -> FloatImage:
    """Rec. 601 luma of an RGB image."""
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    return f32(image @ weights)
