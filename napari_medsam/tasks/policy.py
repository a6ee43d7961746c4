"""What Re-propagate does after a correction: the one policy of the app, the CLI and the 3D eval.

Pure Python. After the user corrects object ``label`` on slice ``z`` (a prompt
or the brush; the slice becomes *corrected*), :func:`plan_repropagation` lists
the steps, from ``z`` and the object's other corrected slices (for several
slices corrected since the last run, the union of their steps):

- **between** ``z`` and its nearest corrected slice on each side (a *gap*):
  ``gaps="fill"`` fills the slices between from the two corrected masks
  (:func:`napari_medsam.tasks.fill.fill_between`), ``"propagate"`` propagates
  from ``z`` towards the neighbour and stops there, ``"keep"`` leaves the gap;
- **beyond** the outermost corrected slice (``z`` has no corrected slice on
  that side): propagate from ``z`` outwards to the object's end, clearing what
  an earlier, longer run painted past the new end only with ``clear_past_end``.

Corrected slices are never overwritten. ``evaluation/protocol3d.py`` replays
exactly these steps after each simulated click, so ``eval --protocol 3d``
measures what the app ships (:data:`DEFAULT_POLICY`; the measurement is in
that module's docstring).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass

GAP_MODES = ("fill", "propagate", "keep")


@dataclass(frozen=True)
class RepropagationPolicy:
    """How a correction spreads; see the module docstring.

    Attributes
    ----------
    gaps : {"fill", "propagate", "keep"}
        What happens between the corrected slice and its corrected neighbours.
    clear_past_end : bool
        Beyond the outermost corrected slice, erase the object past the new end.
        Off: with the bundled model a negative click often empties a slice, and
        clearing then erased the true rest of the organ (kidney R 0.942 -> 0.691).
    fill_refine : {"none", "box", "box+mask"}
        How a filled gap's interpolated masks are refined by the model
        (``refine`` of :func:`napari_medsam.tasks.fill.fill_between`, which checks it;
        this module stays free of the tasks it plans for).
    """

    gaps: str = "fill"
    clear_past_end: bool = False
    fill_refine: str = "box"

    def __post_init__(self) -> None:
        if self.gaps not in GAP_MODES:
            raise ValueError(f"gaps must be one of {GAP_MODES}, got {self.gaps!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PlannedStep:
    """One step of a re-propagation.

    Attributes
    ----------
    kind : {"fill", "propagate"}
    start_z : int
        ``"propagate"``: the slice it starts from (not re-segmented).
        ``"fill"``: the lower anchor.
    end_z : int or None
        ``"fill"``: the upper anchor. ``"propagate"``: the corrected slice where
        it stops (None: runs to the object's end).
    direction : {"up", "down"} or None
        ``"propagate"`` only; ``"up"`` is increasing z.
    clear_past_end : bool
        ``"propagate"`` to the object's end only.
    """

    kind: str
    start_z: int
    end_z: int | None = None
    direction: str | None = None
    clear_past_end: bool = False


#: The policy the app, ``segment --propagate`` re-runs and ``eval --protocol 3d`` use.
DEFAULT_POLICY = RepropagationPolicy(gaps="fill", clear_past_end=False)


def plan_repropagation(
    changed_zs: int | Collection[int],
    corrected_zs: Collection[int],
    policy: RepropagationPolicy = DEFAULT_POLICY,
) -> list[PlannedStep]:
    """The steps that follow corrections of the slices ``changed_zs`` (they are kept).

    Each changed slice ``z`` plans its own steps (the gap to its corrected
    neighbour on each side, or the outward propagation where it has none); the
    union is returned without repeats, so corrections made on several slices
    since the last run (the app's case) are all spread at once.

    Parameters
    ----------
    changed_zs : int or collection of int
        The slices corrected since the last (re-)propagation.
    corrected_zs : collection of int
        All corrected slices of the object (the changed ones are added).
    policy : RepropagationPolicy

    Returns
    -------
    list of PlannedStep
        Per changed slice in increasing z: up side first, then down.
    """
    changed = sorted({int(changed_zs)} if isinstance(changed_zs, int) else {int(z) for z in changed_zs})
    corrected = {int(c) for c in corrected_zs} | set(changed)
    steps: list[PlannedStep] = []
    for z in changed:
        others = corrected - {z}
        above = min((c for c in others if c > z), default=None)
        below = max((c for c in others if c < z), default=None)
        for side, neighbour in (("up", above), ("down", below)):
            if neighbour is None:
                step = PlannedStep("propagate", z, None, side, policy.clear_past_end)
            elif abs(neighbour - z) > 1 and policy.gaps == "fill":
                step = PlannedStep("fill", min(z, neighbour), max(z, neighbour))
            elif abs(neighbour - z) > 1 and policy.gaps == "propagate":
                step = PlannedStep("propagate", z, neighbour, side)
            else:
                continue
            if step not in steps:
                steps.append(step)
    return steps
