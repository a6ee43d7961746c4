"""The settings of one propagation run, as one frozen object instead of twenty arguments.

:func:`napari_medsam.tasks.propagate.propagate` takes the engine, the volume and
window, the seed (slice and mask), the label and the cache key; everything else
a run can change is a field of :class:`PropagationOptions`. The defaults are the
measured ones (:mod:`napari_medsam.tasks.stop_rules`,
:mod:`napari_medsam.tasks.propagate_prompts`); callers that hold a few settings
as keywords (the app's "Advanced" fold, ``eval --protocol 3d`` overrides, the CLI)
build one with ``PropagationOptions(**settings)`` or ``options.replace(...)``.
Pure Python + numpy; no engine, no Qt.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields, replace

import numpy as np

from napari_medsam.tasks.propagate_prompts import DEFAULT_BOX_MARGIN, DEFAULT_USE_POINT
from napari_medsam.tasks.stop_rules import StopRule

DIRECTIONS = ("both", "up", "down")


@dataclass(frozen=True)
class PropagationOptions:
    """How one propagation run goes; every field has the measured default.

    Attributes
    ----------
    direction : {"both", "up", "down"}
        ``"up"`` is increasing z; ``"both"`` runs up first, then down.
    locked_zs : collection of int
        Slices corrected by hand: never predicted nor yielded. Propagation passes
        through a locked slice using ``locked_masks[z]`` as the new seed; a locked
        slice with no entry in ``locked_masks``, or whose mask is smaller than the
        minimum area, ends the direction there.
    locked_masks : mapping of int to np.ndarray, optional
        ``z -> (Y, X) bool`` mask of this object on locked slices.
    stop_at_locked : bool
        End a direction at the first locked slice instead of passing through it.
    clear_past_end : bool
        When a direction ends and no locked slice lies further along it (the
        object's outer end), yield empty masks (score 0.0) for every slice beyond,
        so that re-propagation removes what an earlier, longer run painted there.
    stop_score, stop_overlap : float, optional
        Explicit floors of the predicted IoU and of the IoU with the previous
        slice's mask; given, they replace the rule's fitted ones (the user's number).
    min_area : int, optional
        A direction ends at a mask with fewer pixels (default: the rule's).
    stop_rule : StopRule, optional
        Default :data:`~napari_medsam.tasks.stop_rules.DEFAULT_STOP_RULE`.
    spacing_zyx_mm : tuple of 3 float, optional
        Voxel size, for the rule's spacing scaling (None: no scaling).
    seed_score : float, optional
        Predicted IoU of the seed, for the rule's relative score floor.
    start_logits_lowres : np.ndarray, optional
        (L, L) logits of the seed, the first mask input in ``"logits"`` mode.
    box_margin : int
        Pixels added on each side of the box taken from the previous mask.
    use_point : bool
        Add a positive click at the previous mask's interior.
    mask_prompt : {"none", "logits", "binary"}, optional
        The previous mask as SAM's dense prompt; None: the engine's choice.
    use_prev_logits : bool
        Old name of ``mask_prompt="logits"`` (used when ``mask_prompt`` is None).
    slab_depth : int, optional
        Slices per model call where the engine segments slabs (SD-Trans): None
        uses the engine's ``slab_depth``, 1 forces the per-slice path.
    negatives_from_zyx : np.ndarray, optional
        (Z, Y, X) integer labels copied when the job was made (never a live
        layer); the other objects in each predicted slice's box add negative clicks.
    """

    direction: str = "both"
    locked_zs: Collection[int] = frozenset()
    locked_masks: Mapping[int, np.ndarray] | None = None
    stop_at_locked: bool = False
    clear_past_end: bool = False
    stop_score: float | None = None
    stop_overlap: float | None = None
    min_area: int | None = None
    stop_rule: StopRule | None = None
    spacing_zyx_mm: tuple[float, float, float] | None = None
    seed_score: float | None = None
    start_logits_lowres: np.ndarray | None = field(default=None, repr=False)
    box_margin: int = DEFAULT_BOX_MARGIN
    use_point: bool = DEFAULT_USE_POINT
    mask_prompt: str | None = None
    use_prev_logits: bool = False
    slab_depth: int | None = None
    negatives_from_zyx: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")

    def replace(self, **changes) -> PropagationOptions:
        """A copy with ``changes`` (field names; an unknown name raises TypeError)."""
        return replace(self, **changes)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names (the keywords a caller may set)."""
        return tuple(f.name for f in fields(cls))


#: The measured defaults.
DEFAULT_OPTIONS = PropagationOptions()

#: The "Mask prompt" choices of the app's Advanced fold; the first leaves the engine's own.
ENGINE_DEFAULT = "model's default"
MASK_PROMPT_CHOICES = (ENGINE_DEFAULT, "none", "logits", "binary")


def chosen_settings(
    stop_score: float | None = None,
    stop_overlap: float | None = None,
    mask_prompt: str = ENGINE_DEFAULT,
) -> dict:
    """The :class:`PropagationOptions` fields a user set (None / ENGINE_DEFAULT: the measured).

    Returns
    -------
    dict
        Keywords for ``PropagationOptions(**settings)``; empty when nothing was set.
    """
    out: dict = {}
    if stop_score is not None:
        out["stop_score"] = float(stop_score)
    if stop_overlap is not None:
        out["stop_overlap"] = float(stop_overlap)
    if mask_prompt != ENGINE_DEFAULT:
        out["mask_prompt"] = mask_prompt
    return out
