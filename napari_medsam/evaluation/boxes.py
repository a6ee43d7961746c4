"""Boxes drawn the way people draw them: a few pixels loose and a little shifted.

Numpy only. Benchmarks and ``eval --protocol 3d`` start from such a box rather
than the truth's tight box, since that is what a user gives the model.
"""

from __future__ import annotations

import numpy as np

from napari_medsam.prompts.geometry import box_from_mask

#: Each side lies this many screen pixels outside the object (uniform).
LOOSE_PX = (2.0, 10.0)
#: The whole box is shifted by up to this many screen pixels along each axis.
SHIFT_PX = 2.0
#: The slice's longest side spans this many screen pixels (a dock beside a ~1080 p viewer).
VIEW_PX = 512


def loose_box(
    mask_yx: np.ndarray,
    rng: np.random.Generator,
    loose_px: tuple[float, float] = LOOSE_PX,
    shift_px: float = SHIFT_PX,
    view_px: int = VIEW_PX,
) -> np.ndarray:
    """A user's box around a mask: each side ``loose_px`` out, shifted by up to ``shift_px``.

    The jitter is in screen pixels of a view where the slice's longest side
    spans ``view_px`` pixels, so a 512-pixel CT slice gets 2-10 slice pixels
    and a 128-pixel one 0.5-2.5: what one sees when drawing on a fitted view.

    Parameters
    ----------
    mask_yx : np.ndarray
        (H, W) bool, non-empty.
    rng : np.random.Generator
        Seeded by the caller (state the seed with the results).
    loose_px : tuple of float
        (low, high) of the uniform margin of each side, screen pixels.
    shift_px : float
        Half-range of the uniform shift of the whole box, screen pixels.
    view_px : int
        Screen pixels along the slice's longest side.

    Returns
    -------
    np.ndarray
        (4,) float32 (y0, x0, y1, x1) inclusive pixel corners, clipped to the slice.
    """
    box = box_from_mask(mask_yx)
    if box is None:
        raise ValueError("cannot draw a box around an empty mask")
    h, w = np.shape(mask_yx)
    per_screen_px = max(h, w) / float(view_px)
    margin = rng.uniform(loose_px[0], loose_px[1], size=4) * per_screen_px
    shift = rng.uniform(-shift_px, shift_px, size=2) * per_screen_px
    y0 = box[0] - margin[0] + shift[0]
    x0 = box[1] - margin[1] + shift[1]
    y1 = box[2] + margin[2] + shift[0]
    x1 = box[3] + margin[3] + shift[1]
    return np.array(
        [max(y0, 0.0), max(x0, 0.0), min(y1, h - 1.0), min(x1, w - 1.0)], np.float32
    )


def loose_box_settings(seed: int) -> dict:
    """What a report states about its boxes (JSON-serialisable)."""
    return {
        "kind": "loose",
        "seed": int(seed),
        "loose_px": list(LOOSE_PX),
        "shift_px": SHIFT_PX,
        "view_px": VIEW_PX,
        "note": "screen pixels of a view where the slice's longest side spans view_px",
    }
