"""Training cases for the click decoder, drawn from a :class:`SliceStore`, in the model frame.

Every case is one target object on one stored record (a slice or a zoom crop,
256 x 256): a labelled object, or (ScribblePrompt-style) a few adjacent
superpixels merged at random. Each batch shares one *start*:

- ``click``: positive click(s) inside the object (the first RITM click, or random
  inner pixels), sometimes with a negative click;
- ``box+click``: a loose box, answered by the frozen bundled decoder; its logits
  are fed back with the first corrective click (the app's "box, then click");
- ``propagate``: the object's mask on a neighbouring slice (offset 1-3, up to
  ~7.5 mm) as previous logits, with that mask's box (+2 px) half the time: the
  next-slice prompt of propagation; with ``empty_propagation_fraction``, some of
  these cases show an object that has *ended*: its mask on the neighbouring
  slice is the prompt and the target is empty, so the model learns to return
  nothing (and its IoU head a low score) past an object's end;
- ``mask``: a damaged version of the truth (shifted, eroded or dilated) as
  previous logits plus one corrective click.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion
from scipy.ndimage import shift as nd_shift

from napari_medsam.evaluation.clicker import next_click
from napari_medsam.training.clicks.store import NEIGHBOUR_OFFSETS, SliceStore
from napari_medsam.training.prompts_sim import jitter_box, sample_negative, sample_positive

STARTS = ("click", "box+click", "propagate", "mask")
START_WEIGHTS = (0.45, 0.2, 0.25, 0.1)
SUPERPIXEL_FRACTION = 0.3
MIN_AREA = 12
PROPAGATION_MM = 7.5


@dataclass
class Case:
    """One training case (model frame, 256 x 256)."""

    record: int
    gt: np.ndarray
    points_yx: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    box_yxyx: np.ndarray | None = None
    prev_mask: np.ndarray | None = None

    def add_click(self, y: int, x: int, positive: bool) -> None:
        self.points_yx.append((float(y), float(x)))
        self.labels.append(1 if positive else 0)

    def not_clicked(self) -> np.ndarray:
        free = np.ones(self.gt.shape, bool)
        for y, x in self.points_yx:
            free[int(y), int(x)] = False
        return free

    def click_at_error(self, pred: np.ndarray) -> bool:
        click = next_click(self.gt, pred, self.not_clicked())
        if click is None:
            return False
        self.add_click(click.y, click.x, click.is_positive)
        return True


def _merged_superpixels(spx: np.ndarray, rng) -> np.ndarray | None:
    ids, counts = np.unique(spx, return_counts=True)
    good = ids[(counts >= 60) & (counts <= 0.3 * spx.size)]
    if len(good) == 0:
        return None
    mask = spx == rng.choice(good)
    for _ in range(int(rng.integers(0, 4))):
        ring = binary_dilation(mask, iterations=2) & ~mask
        touching = np.unique(spx[ring])
        if len(touching) == 0:
            break
        grown = mask | (spx == rng.choice(touching))
        if grown.sum() > 0.35 * spx.size:
            break
        mask = grown
    return mask


def _damaged(gt: np.ndarray, rng) -> np.ndarray:
    size = max(1, int(round(0.08 * np.sqrt(gt.sum()))))
    kind = rng.integers(3)
    if kind == 0:
        return binary_erosion(gt, iterations=size)
    if kind == 1:
        return binary_dilation(gt, iterations=size)
    dy, dx = rng.integers(-2 * size, 2 * size + 1, size=2)
    return nd_shift(gt.astype(np.uint8), (dy, dx), order=0) > 0


class CaseSampler:
    """Draws batches of :class:`Case` from the training records of a store.

    Parameters
    ----------
    store : SliceStore
    records : sequence of int
        Record indices to draw from (e.g. the train split).
    seed : int
    """

    def __init__(self, store: SliceStore, records, seed: int = 0) -> None:
        self.store = store
        self.records = np.asarray(list(records), np.int64)
        self.rng = np.random.default_rng(seed)
        self.superpixel_fraction = SUPERPIXEL_FRACTION
        self.empty_propagation_fraction = 0.0

    def _target(self, index: int) -> np.ndarray | None:
        meta = self.store.meta[index]
        rng = self.rng
        if rng.random() < self.superpixel_fraction:
            mask = _merged_superpixels(np.asarray(self.store.arrays["spx"][index]), rng)
            if mask is not None:
                return mask
        lab = np.asarray(self.store.arrays["lab"][index])
        ids = meta["labels"]
        if meta.get("crop_label") in ids and rng.random() < 0.7:
            label = meta["crop_label"]
        else:
            label = ids[int(rng.integers(len(ids)))]
        return self._label_mask(lab, label, meta)

    def _label_mask(self, lab: np.ndarray, label: int, meta: dict) -> np.ndarray:
        mask = lab == label
        self._label = int(label)
        return mask

    def _reach(self, meta: dict) -> list[int]:
        """Indices into NEIGHBOUR_OFFSETS within the propagation reach of a record, shuffled."""
        reach = max(1, int(PROPAGATION_MM // max(float(meta["spacing_mm"]), 0.5)))
        offsets = [i for i, k in enumerate(NEIGHBOUR_OFFSETS) if abs(k) <= min(reach, 3)]
        self.rng.shuffle(offsets)
        return offsets

    def _box_from_prev(self, case: Case) -> None:
        """Half the batches: the previous mask's box, 2 px loose, as the next slice's box."""
        if self._with_box:
            box = jitter_box(case.prev_mask, self.rng, 0.0)
            case.box_yxyx = np.clip(box + [-2, -2, 2, 2], 0, case.gt.shape[0] - 1)

    def _ended_case(self, index: int) -> Case | None:
        """A propagation case past an object's end: a neighbour's mask, an empty target.

        The object is one present (>= MIN_AREA px) on a neighbouring slice within reach
        and absent from this record; None when the record has no such object.
        """
        meta = self.store.meta[index]
        if not meta.get("contiguous"):
            return None
        lab = np.asarray(self.store.arrays["lab"][index])
        nbr = self.store.arrays["nbr"][index]
        for i in self._reach(meta):
            near = np.asarray(nbr[i])
            ids, counts = np.unique(near[near > 0], return_counts=True)
            gone = [int(j) for j, n in zip(ids, counts, strict=True)
                    if n >= MIN_AREA and not (lab == j).any()]
            if gone:
                label = gone[int(self.rng.integers(len(gone)))]
                case = Case(index, np.zeros(lab.shape, bool))
                case.prev_mask = near == label
                self._box_from_prev(case)
                return case
        return None

    def _start(self, case: Case, start: str, meta: dict) -> bool:
        rng, gt = self.rng, case.gt
        if start == "click":
            if rng.random() < 0.6:
                click = next_click(gt, np.zeros_like(gt))
                case.add_click(click.y, click.x, True)
            else:
                for y, x in sample_positive(gt, int(rng.integers(1, 3)), rng):
                    case.add_click(y, x, True)
            if rng.random() < 0.15:
                for y, x in sample_negative(gt, 1, rng):
                    case.add_click(y, x, False)
            return True
        if start == "box+click":
            case.box_yxyx = jitter_box(gt, rng, float(rng.uniform(0.0, 0.15)))
            return True
        if start == "propagate":
            if not meta.get("contiguous") or self._label is None:
                return False
            nbr = self.store.arrays["nbr"][case.record]
            for i in self._reach(meta):
                prev = np.asarray(nbr[i]) == self._label
                if prev.sum() >= MIN_AREA:
                    case.prev_mask = prev
                    self._box_from_prev(case)
                    return True
            return False
        case.prev_mask = _damaged(gt, rng)
        return case.click_at_error(case.prev_mask)

    def batch(self, size: int, start: str | None = None) -> tuple[str, list[Case]]:
        """``size`` cases sharing one start (drawn with :data:`START_WEIGHTS` when None)."""
        if start is None:
            start = STARTS[self.rng.choice(len(STARTS), p=START_WEIGHTS)]
        cases: list[Case] = []
        self._with_box = bool(self.rng.random() < 0.5)
        attempts = 0
        while len(cases) < size:
            attempts += 1
            if attempts > 50 * size:
                start = "click"  # e.g. no contiguous record left for "propagate"
            index = int(self.rng.choice(self.records))
            self._label = None
            if start == "propagate" and self.rng.random() < self.empty_propagation_fraction:
                ended = self._ended_case(index)
                if ended is not None:
                    cases.append(ended)
                continue
            gt = self._target(index)
            if gt is None or gt.sum() < MIN_AREA:
                continue
            case = Case(index, gt)
            if self._start(case, start, self.store.meta[index]):
                cases.append(case)
        return start, cases
