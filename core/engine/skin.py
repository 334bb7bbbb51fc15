"""Skin texture: frequency-separated smoothing that keeps pores, and healing of small spots.

The skin is split in three bands: an edge-keeping base (the face's shape and shading), a middle
band (blotches, wrinkles, uneven texture) and a fine band (pores). The middle band is turned
down hard, the fine band only a little, so skin comes out smooth, not plastic. Spots darker or
redder than the skin around them, too small for the base to follow, are replaced by the skin
around them with the fine texture kept.
"""

from __future__ import annotations

import numpy as np

from core.engine.arrays import FloatImage, f32
from core.engine.filters import blur, guided, luma
from core.engine.frame import Frame

# Shares of the face width.
_FINE_SIGMA = 0.006  # below this, pores and grain: the fine band
_BASE_RADIUS = 0.04
_BASE_EPS = 0.12  # contrast (0..1) the base keeps as an edge
_SPOT_SMALL, _SPOT_LARGE = 0.005, 0.03  # a spot is about this small, in skin this large
# Share of each band removed at full strength (fidelity 0).
_MID_CUT = 1.0
_FINE_CUT = 0.6
# A face this small (work px) or smaller has no pores to keep: its fine band is blotches too.
_PORELESS_WIDTH, _PORED_WIDTH = 48, 160
_FINE_CUT_PORELESS = 0.9
_SPOT_DEPTH = 0.02  # a spot at least this much darker (0..1) than the skin around it
_SPOT_FULL = 0.045


def smooth_skin(image: FloatImage, mask: FloatImage, frame: Frame, strength: float) -> FloatImage:
    """`image` with its skin (where `mask` is 1) smoothed and healed at `strength` (0..1)."""
    fine_base = blur(image, frame.length(_FINE_SIGMA, 0.6))
    base = guided(image, frame.length(_BASE_RADIUS), _BASE_EPS)
    fine = image - fine_base
    middle = fine_base - base
    pored = np.clip(
        (frame.face_width - _PORELESS_WIDTH) / (_PORED_WIDTH - _PORELESS_WIDTH), 0.0, 1.0
    )
    fine_keep = np.float32(
        1 - (_FINE_CUT_PORELESS + (_FINE_CUT - _FINE_CUT_PORELESS) * pored) * strength
    )
    smooth = base + middle * np.float32(1 - _MID_CUT * strength) + fine * fine_keep
    surroundings = blur(image, frame.length(_SPOT_LARGE))
    healed = surroundings + fine * fine_keep
    spots = _spots(image, frame) * np.float32(strength)
    smooth += (healed - smooth) * spots[:, :, None]
    return f32(image + (smooth - image) * mask[:, :, None])


def _spots(image: FloatImage, frame: Frame) -> FloatImage:
    """Weights (0..1) of small spots darker than the skin around them."""
    y = luma(image)
    depth = blur(y, frame.length(_SPOT_LARGE)) - blur(y, frame.length(_SPOT_SMALL, 0.5))
    weight = np.clip((depth - _SPOT_DEPTH) / (_SPOT_FULL - _SPOT_DEPTH), 0.0, 1.0)
    # grown a little, so a spot's soft rim goes with it
    return f32(np.clip(blur(f32(weight), frame.length(_SPOT_SMALL, 0.5)) * 2.0, 0.0, 1.0))
