"""The model's window chosen from the object: intensities inside and around a box (CT).

Numpy only. A lung nodule surrounded by air is invisible in the soft-tissue
window the display shows by default: the 40/400 window maps all of the lung to
0 and the nodule to a flat grey blob. The model sees it far better in a lung
window. :func:`object_window` looks at the Hounsfield units inside the user's
box and in a ring around it and picks the CT preset that fits them
(:data:`~napari_medsam.prompts.intensity.WINDOW_PRESETS`); :func:`percentile_window`
is the data-driven alternative (the percentiles of box + ring). Both are for CT
only: MR and pre-windowed 8-bit slices keep the display's window.

Measured (``benchmarks/sweep_propagation.py --cases lung1 --window-mode case|display``,
LiteMedSAM + clicks, loose boxes seeds 0-2, box-only propagation): on the only object
of the test data that sits in air, the ``pyrad_lung1`` nodule (5 mm), the lung window
the preset rule picks is *not* better than the display's 40/400. Its box-prompted seed
takes in lung around the nodule (precision 0.70 against 1.00 at 40/400); 3D Dice after
Propagate with the default stop rule .688 / .690 / .690 (lung window) against
.682 / .683 / .677 (40/400); best possible cut of the chains .695-.697 against
.805-.810. On every other CT object (sarcomas, liver, spleen, kidneys, bladder, stomach,
gallbladder, aorta, IVC, pancreas) the preset rule keeps soft tissue, so nothing
changes there. So the app and ``eval --protocol 3d`` keep the display's window
(:data:`DEFAULT_WINDOW_RULE`); the rule is there to measure again for a model trained
on several windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_medsam.prompts.intensity import IntensityWindow

#: The ring around the box is this fraction of the box's longer side wide (at least
#: ``RING_MIN_PX`` pixels): the object's near surroundings, which decide what contrast
#: matters. A wider ring (0.5) reaches the air outside the body and the lung bases
#: around a liver (half of it below -400 HU on ``totalseg_ct_full``).
RING_FRACTION = 0.15
RING_MIN_PX = 4
#: Box + ring with at least this fraction of air/lung voxels (< ``AIR_HU``) get the lung
#: window. Measured on the loose boxes of the benchmarks: the ``pyrad_lung1`` nodule 0.8-0.9;
#: the abdominal organs, sarcomas, stomach (gas) and gallbladder of the test scans <= 0.2.
AIR_FRACTION = 0.5
AIR_HU = -400.0
#: A box whose median is at least this (HU) holds bone: the bone window.
BONE_HU = 250.0
#: Width bounds (HU) of :func:`percentile_window`.
PCT_WIDTH = (400.0, 2000.0)
#: The window modes a benchmark or a caller may ask for.
OBJECT_WINDOW_RULES = ("display", "preset", "percentile")
#: The rule ``eval --protocol 3d`` uses without ``--window`` / ``--window-rule``: the
#: display's, as measured (module docstring).
DEFAULT_WINDOW_RULE = "display"


def box_and_ring(slice_yx: np.ndarray, box_yxyx) -> tuple[np.ndarray, np.ndarray]:
    """Finite intensities inside the box and in the ring around it (both 1D float64).

    Parameters
    ----------
    slice_yx : np.ndarray
        (H, W) stored intensities (HU for CT).
    box_yxyx : sequence of 4 float
        (y0, x0, y1, x1) inclusive pixel corners in the slice frame.

    Returns
    -------
    inside, ring : np.ndarray
        Intensities of the box's pixels, and of the pixels of the box widened by
        :data:`RING_FRACTION` of its longer side (at least :data:`RING_MIN_PX`)
        that are not in the box. Empty when the box lies off the slice.
    """
    image = np.asarray(slice_yx)
    h, w = image.shape
    y0, x0, y1, x1 = (float(v) for v in box_yxyx)
    if y1 < y0 or x1 < x0:
        raise ValueError(f"box {box_yxyx} is not (y0, x0, y1, x1) with y0 <= y1 and x0 <= x1")
    pad = max(RING_MIN_PX, RING_FRACTION * max(y1 - y0 + 1.0, x1 - x0 + 1.0))
    inner = np.zeros((h, w), bool)
    outer = np.zeros((h, w), bool)
    iy0, ix0 = max(int(np.floor(y0)), 0), max(int(np.floor(x0)), 0)
    iy1, ix1 = min(int(np.ceil(y1)) + 1, h), min(int(np.ceil(x1)) + 1, w)
    inner[iy0:iy1, ix0:ix1] = True
    oy0, ox0 = max(int(np.floor(y0 - pad)), 0), max(int(np.floor(x0 - pad)), 0)
    oy1, ox1 = min(int(np.ceil(y1 + pad)) + 1, h), min(int(np.ceil(x1 + pad)) + 1, w)
    outer[oy0:oy1, ox0:ox1] = True
    values = image.astype(np.float64, copy=False)
    inside, ring = values[inner], values[outer & ~inner]
    return inside[np.isfinite(inside)], ring[np.isfinite(ring)]


def object_window(slice_yx: np.ndarray, box_yxyx) -> IntensityWindow:
    """The CT preset that fits the object in the box: lung, bone or soft tissue.

    Lung (-600/1500) when at least :data:`AIR_FRACTION` of box + ring is below
    :data:`AIR_HU` (an object in air or lung); else bone (400/1800) when the
    box's median is at least :data:`BONE_HU`; else soft tissue (40/400).

    Parameters
    ----------
    slice_yx : np.ndarray
        (H, W) slice in Hounsfield units.
    box_yxyx : sequence of 4 float
        (y0, x0, y1, x1) inclusive pixel corners, e.g. the user's box or a box
        around a click.

    Returns
    -------
    IntensityWindow
        ``kind="ct"``; soft tissue when the box holds no finite voxel.
    """
    inside, ring = box_and_ring(slice_yx, box_yxyx)
    both = np.concatenate([inside, ring])
    if both.size == 0:
        return IntensityWindow.from_preset("soft tissue")
    if np.count_nonzero(both < AIR_HU) >= AIR_FRACTION * both.size:
        return IntensityWindow.from_preset("lung")
    if inside.size and float(np.median(inside)) >= BONE_HU:
        return IntensityWindow.from_preset("bone")
    return IntensityWindow.from_preset("soft tissue")


def percentile_window(
    slice_yx: np.ndarray, box_yxyx, percentiles: tuple[float, float] = (1.0, 99.0)
) -> IntensityWindow:
    """The window spanning the given percentiles of box + ring, width within :data:`PCT_WIDTH`.

    Parameters
    ----------
    slice_yx : np.ndarray
        (H, W) slice in Hounsfield units.
    box_yxyx : sequence of 4 float
        (y0, x0, y1, x1) inclusive pixel corners.
    percentiles : tuple of 2 float
        Low and high percentile of the box + ring intensities.

    Returns
    -------
    IntensityWindow
        ``kind="ct"``, centred on the percentiles' midpoint.
    """
    inside, ring = box_and_ring(slice_yx, box_yxyx)
    both = np.concatenate([inside, ring])
    if both.size == 0:
        return IntensityWindow.from_preset("soft tissue")
    lo, hi = (float(v) for v in np.percentile(both, percentiles))
    width = float(np.clip(hi - lo, *PCT_WIDTH))
    return IntensityWindow.from_level_width((lo + hi) / 2.0, width, kind="ct")


def window_for_prompt(
    rule: str, display: IntensityWindow, slice_yx: np.ndarray, box_yxyx, is_ct: bool
) -> IntensityWindow:
    """The model's window for one prompt under ``rule`` (one of :data:`OBJECT_WINDOW_RULES`).

    ``"display"`` and any non-CT scan keep ``display``; ``"preset"`` is
    :func:`object_window`, ``"percentile"`` :func:`percentile_window`.
    """
    if rule not in OBJECT_WINDOW_RULES:
        raise ValueError(f"window rule must be one of {OBJECT_WINDOW_RULES}, got {rule!r}")
    if rule == "display" or not is_ct:
        return display
    if rule == "preset":
        return object_window(slice_yx, box_yxyx)
    return percentile_window(slice_yx, box_yxyx)


@dataclass(frozen=True)
class ObjectWindowRule:
    """A window rule bound to a scan: what a caller holds instead of one fixed window.

    Attributes
    ----------
    rule : str
        One of :data:`OBJECT_WINDOW_RULES`.
    display : IntensityWindow
        The display's (or the scan's auto) window, kept for ``"display"`` and non-CT scans.
    is_ct : bool
        Whether the scan is CT in Hounsfield units.
    """

    rule: str
    display: IntensityWindow
    is_ct: bool

    def __post_init__(self) -> None:
        if self.rule not in OBJECT_WINDOW_RULES:
            raise ValueError(f"window rule must be one of {OBJECT_WINDOW_RULES}, got {self.rule!r}")

    def for_prompt(self, slice_yx: np.ndarray, box_yxyx) -> IntensityWindow:
        """The window of an object prompted with ``box_yxyx`` on the (H, W) ``slice_yx``."""
        return window_for_prompt(self.rule, self.display, slice_yx, box_yxyx, self.is_ct)
