"""Intensity windows: CT windowing in Hounsfield units and MR percentile clipping.

A window maps raw voxels to float32 in [0, 1], the range the engines take. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "WINDOW_PRESETS",
    "IntensityWindow",
    "auto_window",
    "default_window_choice",
    "window_choices",
    "window_for_choice",
    "looks_like_ct",
    "mr_window",
    "sample_finite",
]

#: CT window presets as (level, width) in HU.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "soft tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
}

#: Percentiles clipped for MR (and any non-CT) volumes.
MR_PERCENTILES: tuple[float, float] = (0.5, 99.5)

# Percentiles and CT detection look at about this many voxels (a fixed stride).
_SAMPLE_SIZE = 1_000_000


@dataclass(frozen=True)
class IntensityWindow:
    """Linear intensity window ``[lo, hi]`` -> ``[0, 1]``.

    Attributes
    ----------
    lo, hi : float
        Raw intensities mapped to 0 and 1 (``lo < hi``); values outside are clipped.
    kind : str
        Where it came from: ``"ct"`` (HU window), ``"mr"`` (percentiles) or ``"manual"``.
    """

    lo: float
    hi: float
    kind: str = "manual"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.lo) and np.isfinite(self.hi)) or not self.lo < self.hi:
            raise ValueError(f"window needs finite lo < hi, got [{self.lo}, {self.hi}]")

    @classmethod
    def from_level_width(cls, level: float, width: float, kind: str = "ct") -> IntensityWindow:
        """Window centred on ``level`` spanning ``width`` (both in raw units, e.g. HU)."""
        if width <= 0:
            raise ValueError(f"window width must be positive, got {width}")
        return cls(float(level) - width / 2.0, float(level) + width / 2.0, kind)

    @classmethod
    def from_preset(cls, name: str) -> IntensityWindow:
        """CT window from :data:`WINDOW_PRESETS` (e.g. ``"soft tissue"``)."""
        level, width = WINDOW_PRESETS[name]
        return cls.from_level_width(level, width, kind="ct")

    @property
    def level_width(self) -> tuple[float, float]:
        """``(level, width)`` of the window."""
        return ((self.lo + self.hi) / 2.0, self.hi - self.lo)

    @property
    def contrast_limits(self) -> tuple[float, float]:
        """``(lo, hi)`` for a napari image layer."""
        return (float(self.lo), float(self.hi))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Window an array of any shape.

        Parameters
        ----------
        image : array
            Raw intensities (any real dtype, any shape, e.g. a (H, W) slice).

        Returns
        -------
        float32 array, same shape
            ``(clip(image, lo, hi) - lo) / (hi - lo)``; NaN becomes 0, +inf 1, -inf 0.
        """
        arr = np.asarray(image, dtype=np.float32)
        out = (arr - np.float32(self.lo)) / np.float32(self.hi - self.lo)
        np.clip(out, 0.0, 1.0, out=out)
        out[np.isnan(out)] = 0.0
        return out


def sample_finite(volume: np.ndarray, max_samples: int = _SAMPLE_SIZE) -> np.ndarray:
    """A deterministic subsample (fixed stride) of the finite voxels, as float64 1D.

    Parameters
    ----------
    volume : array
        Any shape and real dtype.
    max_samples : int
        Upper bound on the number of voxels looked at.
    """
    flat = np.asarray(volume).reshape(-1)
    if flat.size > max_samples:
        flat = flat[:: int(np.ceil(flat.size / max_samples))]
    flat = flat.astype(np.float64, copy=False)
    return flat[np.isfinite(flat)]


def mr_window(
    volume: np.ndarray, percentiles: tuple[float, float] = MR_PERCENTILES
) -> IntensityWindow:
    """Window from the 0.5 and 99.5 percentiles of the finite voxels (``kind="mr"``).

    Large volumes are subsampled with a fixed stride, so the result is deterministic.
    A constant or empty volume gives a unit-wide window at its value.
    """
    values = sample_finite(volume)
    if values.size == 0:
        return IntensityWindow(0.0, 1.0, "mr")
    lo, hi = (float(v) for v in np.percentile(values, percentiles))
    if not hi > lo:
        lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        hi = lo + 1.0
    return IntensityWindow(lo, hi, "mr")


def looks_like_ct(volume: np.ndarray) -> bool:
    """Whether intensities look like CT Hounsfield units.

    True for a signed-integer or float volume whose minimum is at most -500 HU (air,
    lung or scanner padding is present) and whose voxels lie almost all (>= 98 %) in
    [-3100, 4100] HU. Unsigned volumes (typical MR and 8-bit images) are never CT.
    """
    arr = np.asarray(volume)
    if arr.dtype.kind not in "if":
        return False
    values = sample_finite(arr)
    if values.size == 0 or values.min() > -500.0:
        return False
    in_range = np.count_nonzero((values >= -3100.0) & (values <= 4100.0))
    return in_range >= 0.98 * values.size


def auto_window(volume: np.ndarray) -> IntensityWindow:
    """Soft-tissue CT window (level 40, width 400) for HU data, else MR percentiles.

    Returns
    -------
    IntensityWindow
        ``kind`` is ``"ct"`` or ``"mr"``.
    """
    if looks_like_ct(volume):
        return IntensityWindow.from_preset("soft tissue")
    return mr_window(volume)


#: The dock's window choices besides the CT presets: MR percentiles, or the display as it is.
MR_AUTO = "MR auto"
CURRENT_DISPLAY = "current display"


def window_choices() -> list[str]:
    """Names offered in the dock's window combo, in order."""
    return [*WINDOW_PRESETS, MR_AUTO, CURRENT_DISPLAY]


def window_for_choice(choice: str, volume: np.ndarray) -> IntensityWindow | None:
    """The window of a :func:`window_choices` entry for ``volume``; None for the display's."""
    if choice == CURRENT_DISPLAY:
        return None
    if choice == MR_AUTO:
        return mr_window(volume)
    level, width = WINDOW_PRESETS[choice]
    return IntensityWindow.from_level_width(level, width)


def default_window_choice(volume: np.ndarray) -> str:
    """Soft tissue for CT-like intensities, MR percentiles otherwise."""
    return "soft tissue" if looks_like_ct(volume) else MR_AUTO
