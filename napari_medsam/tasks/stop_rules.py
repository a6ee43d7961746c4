"""When a propagation direction ends: thresholds fitted to the scan and the object.

Numpy only. A :class:`StopRule` is what the user sets (dock "advanced" fold,
``--stop-score`` / ``--stop-overlap``); :meth:`StopRule.fit` turns it into the
:class:`StopThresholds` of one run from the slice spacing, the seed's size and
the model's predicted IoU on the seed. Why fitted: on a 5-7 mm scan a 1-2 ml
tumour changes more between neighbouring slices than a kidney at 3 mm, so a
fixed overlap floor stops it one slice from the seed; and the IoU head is less
confident on small objects, so a fixed score floor stops it too. The measured
figures are in ``benchmarks/sweep_propagation.py``'s output (see
:data:`DEFAULT_STOP_RULE`).

Rules, for a predicted slice with ``area`` pixels, predicted IoU ``score`` and
IoU ``overlap`` with the previous slice's mask, the first that holds wins:

- ``area < min_area``: the object vanished;
- ``score < score_floor``, where ``score_floor = stop_score`` (absolute), or
  ``score_ratio * seed_score`` when ``score_ratio`` is set and a seed score is
  known (relative to the IoU head's own confidence on this object);
- ``overlap < overlap_floor``, where ``overlap_floor = stop_overlap - overlap_slope
  * step`` clipped to [``overlap_min``, ``stop_overlap``] and ``step = spacing_z /
  radius``: the slice spacing over the seed's equivalent radius (``sqrt(area /
  pi)`` in mm, the seed being the user's slice). ``step`` is 0 without a spacing.

Measured (``benchmarks/sweep_propagation.py``, bundled LiteMedSAM, seeded loose
box on the largest slice, the window that fits; 3D Dice after Propagate, slices
painted / truth slices; spleen and kidney R of ``totalseg_ct_full``, 3 mm):

==========================  ======  ========  ========  =========  ========  ========
mode / rule                 t2s GM  brain2    lung1     STS_002    spleen    kidney R
                            7.5 mm  6.5 mm    5 mm      3.3 mm     3 mm      3 mm
==========================  ======  ========  ========  =========  ========  ========
box only, 0.85 / 0.6        .240    .527 1/3  .690 2/3  .851 14/16 .951 29   .894 33
box only, 0.85 x seed/0.6   .261    .413 2/3  .703 3/3  .832 16/16 .951 29   .894 33
logits, 0.85 / 0.6          .077    .527 1/3  .515 1/3  .647 7/16  .499 7    .543 12
logits, 0.85 x seed/0.6     .286    .618 3/3  .750 3/3  .841 14/16 .548 8    .592 14
==========================  ======  ========  ========  =========  ========  ========

Mean of the thick (>= 5 mm) and thin group means: box only with the fixed rule
0.686 (thick 0.486, thin 0.887), the best of 300 replayed rules; the previous
mask as dense prompt (``logits``) with a seed-relative score helps the thick
scans (0.551) but stops the 3 mm organs early (0.570): the bundled model was
never trained with a mask input. Spacing-scaled overlap floors never beat the
flat 0.6 (they let thick chains run one slice too far: lung 0.703 -> 0.560).
So the default stays :data:`FIXED_STOP_RULE` with box-only prompts; a model
trained with mask prompts is re-measured with the same script.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class StopThresholds:
    """The concrete floors of one propagation run (see the module docstring)."""

    score: float
    overlap: float
    min_area: int

    def reason(self, area: int, score: float, overlap: float) -> str | None:
        """Why a direction ends at this slice, e.g. ``"overlap 0.53 < 0.60"``; None: go on."""
        if area < self.min_area:
            return f"area {area} px < {self.min_area} px"
        if score < self.score:
            return f"score {_below(score, self.score)}"
        if overlap < self.overlap:
            return f"overlap {_below(overlap, self.overlap)}"
        return None


def _below(value: float, floor: float) -> str:
    """``"0.74 < 0.85"``, with a third or fourth digit where two would read ``"0.85 < 0.85"``."""
    digits = 2
    while digits < 4 and f"{value:.{digits}f}" == f"{floor:.{digits}f}":
        digits += 1
    return f"{value:.{digits}f} < {floor:.{digits}f}"


@dataclass(frozen=True)
class StopRule:
    """User-facing stop settings; :meth:`fit` makes a run's :class:`StopThresholds`.

    Attributes
    ----------
    stop_score : float
        Absolute floor of the predicted IoU (used when ``score_ratio`` is None
        or the seed's score is unknown). ``-inf`` turns the rule off.
    stop_overlap : float
        Floor of the IoU with the previous slice's mask for a flat step (0 = off).
    min_area : int
        Fewest pixels of a painted slice.
    score_ratio : float or None
        Score floor relative to the seed's predicted IoU.
    overlap_slope : float
        How much the overlap floor drops per unit of ``spacing_z / radius``.
    overlap_min : float
        The overlap floor never drops below this.
    """

    stop_score: float
    stop_overlap: float
    min_area: int = 5
    score_ratio: float | None = None
    overlap_slope: float = 0.0
    overlap_min: float = 0.0

    def fit(
        self,
        spacing_zyx_mm=None,
        seed_mask_yx: np.ndarray | None = None,
        seed_score: float | None = None,
    ) -> StopThresholds:
        """The thresholds of one run.

        Parameters
        ----------
        spacing_zyx_mm : sequence of 3 float, optional
            Voxel size (z, y, x) in mm; None: no spacing scaling.
        seed_mask_yx : np.ndarray, optional
            (Y, X) bool mask on the start slice, for the object's radius.
        seed_score : float, optional
            The model's predicted IoU on the start slice (None: unknown).
        """
        score = self.stop_score
        if self.score_ratio is not None and seed_score is not None and math.isfinite(seed_score):
            score = self.score_ratio * float(seed_score)
        overlap = self.stop_overlap
        step = spacing_step(spacing_zyx_mm, seed_mask_yx)
        if self.overlap_slope and step > 0:
            low = min(self.overlap_min, self.stop_overlap)
            overlap = float(np.clip(self.stop_overlap - self.overlap_slope * step, low, overlap))
        return StopThresholds(float(score), float(overlap), int(self.min_area))

    def with_overrides(
        self, stop_score: float | None = None, stop_overlap: float | None = None
    ) -> StopRule:
        """The rule with a user's explicit floors: a given score floor is absolute and a
        given overlap floor is flat (the user's number is the one applied)."""
        rule = self
        if stop_score is not None:
            rule = replace(rule, stop_score=float(stop_score), score_ratio=None)
        if stop_overlap is not None:
            rule = replace(rule, stop_overlap=float(stop_overlap), overlap_slope=0.0)
        return rule


def spacing_step(spacing_zyx_mm, seed_mask_yx: np.ndarray | None) -> float:
    """Slice spacing over the seed's equivalent radius (both mm); 0.0 when either is unknown."""
    if spacing_zyx_mm is None or seed_mask_yx is None:
        return 0.0
    sz, sy, sx = (float(v) for v in spacing_zyx_mm)
    area_mm2 = float(np.count_nonzero(seed_mask_yx)) * sy * sx
    if area_mm2 <= 0 or sz <= 0:
        return 0.0
    return sz / math.sqrt(area_mm2 / math.pi)


#: Fixed floors, as measured on one 3 mm CT (``totalseg_ct_full``): score 0.85, overlap 0.6.
FIXED_STOP_RULE = StopRule(stop_score=0.85, stop_overlap=0.6, min_area=5)

#: The default, measured on thick and thin scans with loose boxes
#: (``benchmarks/sweep_propagation.py --cases all``); see the module docstring.
DEFAULT_STOP_RULE = FIXED_STOP_RULE
