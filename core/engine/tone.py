"""Light and colour: evened skin tone, softened under-eyes, brighter eyes and teeth.

Only low frequencies of the skin move, so texture is untouched; pulling its colour towards the
face's own median evens blotches and redness without adding a cast, and a grey photo stays grey.
"""

from __future__ import annotations

import cv2
import numpy as np

from core.engine.arrays import FloatImage, f32
from core.engine.filters import blur, luma
from core.engine.frame import Frame
from core.engine.masks import Masks

_TONE_SIGMA = 0.06  # share of the face width: the scale of tone changes
_EVEN = 0.55  # share of colour blotches evened out at full strength
_LIFT = 0.12  # mid-tones lifted by LIFT * Y * (1 - Y)
_UNDER_EYE = 0.6  # share of the under-eyes' darkness (against the cheeks) lifted
_EYE_GAIN = 0.08  # eyes brightened by this share at full strength
_TEETH_WHITEN = 0.35  # share of the teeth's colour taken out ...
_TEETH_LIFT = 0.06  # ... and the brightness they gain, at full strength


def adjust_tone(image: FloatImage, masks: Masks, frame: Frame, strength: float) -> FloatImage:
    """`image` with the tone steps applied at `strength` (0..1)."""
    s = np.float32(strength)
    low = blur(image, frame.length(_TONE_SIGMA))
    ycc = f32(cv2.cvtColor(low, cv2.COLOR_RGB2YCrCb))
    skin = masks.skin > 0.5
    if not skin.any():
        return image
    median = f32(np.median(ycc[skin], axis=0))
    y = ycc[:, :, 0]
    d_y = np.float32(_LIFT) * y * (np.float32(1) - y)
    d_y += np.maximum(median[0] - y, 0) * np.float32(_UNDER_EYE) * masks.under_eyes
    d_cr = (median[1] - ycc[:, :, 1]) * np.float32(_EVEN)
    d_cb = (median[2] - ycc[:, :, 2]) * np.float32(_EVEN)
    # YCrCb offsets in RGB (the inverse of OpenCV's conversion matrix)
    offset = np.dstack(
        (
            d_y + np.float32(1.403) * d_cr,
            d_y - np.float32(0.714) * d_cr - np.float32(0.344) * d_cb,
            d_y + np.float32(1.773) * d_cb,
        )
    )
    out = image + offset * (masks.skin * s)[:, :, None]
    out *= (np.float32(1) + np.float32(_EYE_GAIN) * s * masks.eyes)[:, :, None]
    grey = luma(out)[:, :, None]
    teeth = (masks.teeth * s)[:, :, None]
    whitened = out + (grey - out) * np.float32(_TEETH_WHITEN) + np.float32(_TEETH_LIFT)
    return f32(out + (whitened - out) * teeth)
