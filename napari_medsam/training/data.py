"""Training cases: object slices of labelled volumes, preprocessed once.

Every label id of every (scan, labels) pair is an object. A case is one object
on one slice along the reader's slice axis (axis 0 of
:func:`napari_medsam.io.nifti.load_nifti`'s ``data_zyx``, what the app and the
eval slide along), optionally also along axes 1 and 2 as augmentation (those
slices are resampled to square pixels). Slices are windowed as the app does
(:func:`napari_medsam.prompts.intensity.auto_window` or the given level/width)
and made into the model's input with the app's
:func:`napari_medsam.model.preprocess.preprocess_slices`, once, before training.

Objects ``(volume, label)`` -- or whole volumes -- are held out by a seeded split;
held-out objects are evaluated with the eval protocol on axis-0 slices.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import zoom

from napari_medsam.evaluation.cases import labels_present
from napari_medsam.model.preprocess import preprocess_slices
from napari_medsam.model.configs import InputSpec
from napari_medsam.prompts.geometry import RESIZE_LONGEST_SIDE, resized_shape
from napari_medsam.prompts.intensity import IntensityWindow, auto_window

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Volume:
    """One labelled scan in the reader's (Z, Y, X) order.

    Attributes
    ----------
    name : str
    image_zyx : np.ndarray
        Stored intensities (HU for CT).
    labels_zyx : np.ndarray
        Integer labels on the same grid.
    spacing_zyx_mm : tuple of float
    window : IntensityWindow
        The app's window for this scan.
    """

    name: str
    image_zyx: np.ndarray
    labels_zyx: np.ndarray
    spacing_zyx_mm: tuple[float, float, float]
    window: IntensityWindow


@dataclass(frozen=True)
class TrainCase:
    """One object on one preprocessed slice.

    Attributes
    ----------
    slice_index : int
        Index into :attr:`TrainingSet.images`.
    volume : int
    label : int
    axis : int
        0 (the reader's slice axis) or 1 / 2 (augmentation).
    position : int
        Slice index along ``axis``.
    area : int
        Object pixels on the slice.
    """

    slice_index: int
    volume: int
    label: int
    axis: int
    position: int
    area: int


def load_volume(scan_path: str, labels_path: str, window: tuple[float, float] | None) -> Volume:
    """Read a (scan, labels) pair with the app's reader and choose the app's window."""
    from napari_medsam.io.nifti import load_nifti

    scan = load_nifti(scan_path)
    truth = load_nifti(labels_path)
    image = np.asarray(scan.data_zyx)
    labels = np.asarray(truth.data_zyx)
    if image.shape != labels.shape:
        raise ValueError(f"{scan_path} {image.shape} and {labels_path} {labels.shape} differ")
    if not np.issubdtype(labels.dtype, np.integer):
        labels = np.rint(labels).astype(np.int32)
    return make_volume(scan.name, image, labels, scan.spacing_zyx_mm, window)


def make_volume(
    name: str,
    image_zyx: np.ndarray,
    labels_zyx: np.ndarray,
    spacing_zyx_mm: Sequence[float],
    window: tuple[float, float] | None = None,
) -> Volume:
    """A :class:`Volume` from arrays; ``window`` (level, width) or the app's auto window."""
    chosen = (
        IntensityWindow.from_level_width(window[0], window[1], kind="manual")
        if window is not None
        else auto_window(image_zyx)
    )
    spacing = tuple(float(s) for s in spacing_zyx_mm)
    return Volume(name, image_zyx, labels_zyx, spacing, chosen)  # type: ignore[arg-type]


def split_objects(
    objects: Sequence[tuple[int, int]], n_volumes: int, fraction: float, by: str, seed: int
) -> set[tuple[int, int]]:
    """Choose the held-out objects.

    Parameters
    ----------
    objects : sequence of (volume, label)
    n_volumes : int
    fraction : float
        Of the objects (``by="object"``) or of the volumes (``by="volume"``); at
        least one is held out when ``fraction > 0`` and one can be spared.
    by : {"object", "volume"}
    seed : int

    Returns
    -------
    set of (volume, label)
    """
    if fraction <= 0 or not objects:
        return set()
    rng = np.random.default_rng(seed)
    if by == "volume":
        if n_volumes < 2:
            raise ValueError("a split by volume needs at least two volumes")
        n = min(n_volumes - 1, max(1, round(fraction * n_volumes)))
        held = set(rng.permutation(n_volumes)[:n].tolist())
        return {o for o in objects if o[0] in held}
    ordered = sorted(objects)
    n = min(len(ordered) - 1, max(1, round(fraction * len(ordered))))
    if n < 1:
        return set()
    return {ordered[i] for i in rng.permutation(len(ordered))[:n]}


def _slices_along(
    volume: Volume, axis: int, stride: int
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(position, windowed (H, W) float32, labels (H, W)) slices along ``axis``.

    Slices along axes 1 and 2 are resampled so their pixels are square (the
    spacing of their second axis): linear for the image, nearest for the labels.
    """
    n = volume.image_zyx.shape[axis]
    positions = range(n) if axis == 0 else range(stride // 2, n, max(1, stride))
    out = []
    for pos in positions:
        labels = np.take(volume.labels_zyx, pos, axis=axis)
        if not labels.any():
            continue
        image = volume.window.apply(np.take(volume.image_zyx, pos, axis=axis))
        if axis != 0:
            other = 2 if axis == 1 else 1
            factor = volume.spacing_zyx_mm[0] / volume.spacing_zyx_mm[other]
            if abs(factor - 1.0) > 1e-3:
                image = zoom(image, (factor, 1.0), order=1).astype(np.float32)
                labels = zoom(labels, (factor, 1.0), order=0)
        out.append((pos, np.ascontiguousarray(image, np.float32), np.ascontiguousarray(labels)))
    return out


def target_in_model_frame(
    gt_yx: np.ndarray, side: int, lowres_side: int, resize: str = RESIZE_LONGEST_SIDE
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The object's mask in the low-res logits frame and the valid (unpadded) extent.

    The slice is resized longest-side to ``side`` and padded bottom/right (as
    :func:`preprocess_slices`); the mask follows (bilinear, > 0.5) and is then
    brought to the ``lowres_side`` square of the decoder's logits.

    Returns
    -------
    target : torch.Tensor
        (lowres_side, lowres_side) bool.
    valid_hw : tuple of int
        Rows and columns of the low-res frame that cover the slice.
    """
    gt = torch.from_numpy(np.asarray(gt_yx, np.float32))[None, None]
    new_h, new_w = resized_shape(gt_yx.shape, side, resize)
    scale = lowres_side / side
    low_h, low_w = max(1, round(new_h * scale)), max(1, round(new_w * scale))
    resized = F.interpolate(gt, size=(low_h, low_w), mode="bilinear", align_corners=False)
    target = torch.zeros((lowres_side, lowres_side), dtype=torch.bool)
    target[:low_h, :low_w] = resized[0, 0] > 0.5
    return target, (low_h, low_w)


class TrainingSet:
    """Preprocessed training slices, their object cases and the held-out cases.

    Parameters
    ----------
    volumes : sequence of Volume
    spec : InputSpec
        The model's input convention (side, scaling).
    lowres_side : int
        Side of the decoder's low-res logits.
    labels : sequence of int, optional
        Label ids to use (default: all present).
    val_fraction, split, seed
        See :func:`split_objects`.
    min_area : int
        Smallest object area (pixels) on a slice.
    other_axes : bool
        Add cases along axes 1 and 2 (training objects only).
    other_axes_stride : int

    Attributes
    ----------
    images : list of torch.Tensor
        (3, side, side) preprocessed slices (float32; float16 above 512 px), or
        their (C, h, w) image embeddings once ``embedded``.
    embedded : bool
        True after :func:`napari_medsam.training.cached.cache_embeddings`.
    label_slices : list of np.ndarray
        (H, W) integer labels of each slice.
    cases : list of TrainCase
        Training cases.
    heldout : set of (volume, label)
        Held-out objects (their axis-0 slices are the validation cases).
    """

    def __init__(
        self,
        volumes: Sequence[Volume],
        spec: InputSpec,
        lowres_side: int,
        labels: Sequence[int] | None = None,
        val_fraction: float = 0.2,
        split: str = "object",
        seed: int = 0,
        min_area: int = 100,
        other_axes: bool = False,
        other_axes_stride: int = 4,
    ) -> None:
        self.volumes = list(volumes)
        self.spec = spec
        self.lowres_side = int(lowres_side)
        self.min_area = int(min_area)
        wanted = None if labels is None else {int(v) for v in labels}
        objects = []
        for v, vol in enumerate(self.volumes):
            present = labels_present(vol.labels_zyx)
            objects += [(v, lab) for lab in present if wanted is None or lab in wanted]
        if not objects:
            raise ValueError("no labelled object in the training data")
        self.objects = sorted(objects)
        self.heldout = split_objects(self.objects, len(self.volumes), val_fraction, split, seed)
        train = set(self.objects) - self.heldout
        self.images: list[torch.Tensor] = []
        self.label_slices: list[np.ndarray] = []
        self.cases: list[TrainCase] = []
        self.embedded = False
        storage = torch.float16 if spec.side > 512 else torch.float32
        axes = (0, 1, 2) if other_axes else (0,)
        for v, vol in enumerate(self.volumes):
            mine = sorted(lab for (vv, lab) in train if vv == v)
            if not mine:
                continue
            for axis in axes:
                for pos, image, lab_yx in _slices_along(vol, axis, other_axes_stride):
                    found = [(lab, int(np.count_nonzero(lab_yx == lab))) for lab in mine]
                    found = [(lab, a) for lab, a in found if a >= max(1, self.min_area)]
                    if not found:
                        continue
                    index = len(self.images)
                    self.images.append(preprocess_slices([image], spec)[0].to(storage))
                    self.label_slices.append(lab_yx)
                    self.cases += [TrainCase(index, v, lab, axis, pos, a) for lab, a in found]
        if not self.cases:
            raise ValueError(
                f"no training object slice has at least {self.min_area} pixels "
                f"(objects {sorted(train)})"
            )
        logger.info(
            "%d training cases on %d slices; %d objects held out",
            len(self.cases),
            len(self.images),
            len(self.heldout),
        )

    def __len__(self) -> int:
        return len(self.cases)

    def gt_yx(self, case: TrainCase) -> np.ndarray:
        """(H, W) bool truth of a case on its slice."""
        return self.label_slices[case.slice_index] == case.label

    def hw(self, case: TrainCase) -> tuple[int, int]:
        """(H, W) of the case's slice."""
        return tuple(self.label_slices[case.slice_index].shape)  # type: ignore[return-value]

    def image(self, case: TrainCase) -> torch.Tensor:
        """(3, side, side) float32 model input of the case's slice (its embedding once
        ``embedded``)."""
        return self.images[case.slice_index].float()

    def target(self, case: TrainCase) -> tuple[torch.Tensor, tuple[int, int]]:
        """See :func:`target_in_model_frame`."""
        return target_in_model_frame(
            self.gt_yx(case), self.spec.side, self.lowres_side, self.spec.resize
        )
