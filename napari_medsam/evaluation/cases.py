"""Evaluation cases: every object slice along the reader's slice axis.

The app's reader (:func:`napari_medsam.io.nifti.load_nifti`) puts the slice
axis the viewer slides along at axis 0 of ``data_zyx``; the evaluation takes
the same slices, so a case is exactly what a user sees and clicks on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Case:
    """One object on one slice.

    Attributes
    ----------
    label : int
        Label id in the label volume.
    z : int
        Slice index along axis 0 of the (Z, Y, X) arrays.
    area : int
        Object pixels on the slice.
    """

    label: int
    z: int
    area: int

    def gt_yx(self, labels_zyx: np.ndarray) -> np.ndarray:
        """(Y, X) bool truth of this object on its slice."""
        return np.asarray(labels_zyx[self.z]) == self.label


def labels_present(labels_zyx: np.ndarray) -> list[int]:
    """Sorted non-zero label ids present in an integer (Z, Y, X) volume."""
    return [int(v) for v in np.unique(labels_zyx) if v != 0]


def parse_labels(text: str | None, labels_zyx: np.ndarray) -> list[int]:
    """Parse ``--labels 1,5,7``; None or empty means every label present.

    Raises
    ------
    ValueError
        On a malformed list or a label absent from the volume.
    """
    present = labels_present(labels_zyx)
    if not text:
        return present
    try:
        wanted = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise ValueError(f"--labels must be comma-separated integers, got {text!r}") from err
    missing = [v for v in wanted if v not in present]
    if missing:
        raise ValueError(f"label(s) {missing} not present in the label volume")
    return wanted


def iter_cases(labels_zyx: np.ndarray, labels: Iterable[int], min_area: int = 1) -> Iterator[Case]:
    """Yield a :class:`Case` for every (slice, label) with at least ``min_area`` pixels.

    Cases come ordered by slice and then by label, so labels that share a slice
    share its cached embedding.

    Parameters
    ----------
    labels_zyx : np.ndarray
        (Z, Y, X) integer label volume in the reader's display order.
    labels : iterable of int
        Label ids to evaluate.
    min_area : int
        Skip object slices with fewer pixels than this.
    """
    wanted = [int(v) for v in labels]
    for z in range(labels_zyx.shape[0]):
        slice_yx = np.asarray(labels_zyx[z])
        for label in wanted:
            area = int(np.count_nonzero(slice_yx == label))
            if area > 0 and area >= min_area:
                yield Case(label=label, z=z, area=area)
