"""Build the click model's training store: slices and zoom crops, windowed, embedded once.

For every volume of :mod:`napari_medsam.training.clicks.sources` it picks labelled
slices on all three axes (in-plane only for anisotropic scans), windows them as
the app would (CT soft tissue, sometimes lung or bone; MR/PET percentiles; BTCV's
uint8 as is), augments some (flip, gamma) **before** embedding, adds zoom-in crops
around small objects, and stores the embeddings (fp16) with the label maps of the
slice and its neighbours and superpixels, in the model frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from napari_medsam.io.nifti import load_nifti
from napari_medsam.prompts import zoom
from napari_medsam.prompts.intensity import IntensityWindow, mr_window
from napari_medsam.training.clicks.sources import VolumeSource
from napari_medsam.training.clicks.store import NEIGHBOUR_OFFSETS, SliceStore

logger = logging.getLogger(__name__)

SIDE = 256
#: slices per (volume, axis): in-plane axis, the two others
SLICES_AXIAL, SLICES_OTHER = 40, 14
CROP_PROBABILITY = 0.6
AUGMENT_PROBABILITY = 0.3
_CT_WINDOWS = {"soft tissue": (40, 400), "lung": (-600, 1500), "bone": (400, 1800)}

Encoder = Callable[[list[np.ndarray]], np.ndarray]


def nearest_resize(labels_hw: np.ndarray, side: int = SIDE) -> np.ndarray:
    """(h, w) integer map stretched to (side, side), nearest at pixel centres."""
    h, w = labels_hw.shape
    rows = np.minimum(((np.arange(side) + 0.5) * h / side).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(side) + 0.5) * w / side).astype(np.int64), w - 1)
    return labels_hw[rows][:, cols]


def choose_window(src: VolumeSource, volume: np.ndarray, rng) -> IntensityWindow:
    """The window the model sees for this record (random among sensible ones for CT)."""
    if src.kind == "ct8":
        return IntensityWindow(0.0, 255.0, "manual")
    if src.kind == "ct":
        lung = "pulmonary" in src.name or "lung" in src.name
        p = [0.4, 0.5, 0.1] if lung else [0.7, 0.15, 0.15]
        name = rng.choice(list(_CT_WINDOWS), p=p)
        return IntensityWindow.from_level_width(*_CT_WINDOWS[name])
    return mr_window(volume)


def _axes(spacing_zyx: tuple[float, float, float], shape: tuple[int, ...]) -> list[int]:
    """Slice axes whose in-plane pixels are near square (ratio <= 2) and >= 32 px a side."""
    out = []
    for axis in range(3):
        plane = [s for a, s in enumerate(spacing_zyx) if a != axis]
        dims = [n for a, n in enumerate(shape) if a != axis]
        if max(plane) / min(plane) <= 2.0 and min(dims) >= 32:
            out.append(axis)
    return out


def _small_object_crop(labels_hw: np.ndarray, ids: list[int], rng) -> tuple[np.ndarray, int] | None:
    """A jittered zoom crop around one small object of the slice, or None."""
    h, w = labels_hw.shape
    options = []
    for label in ids:
        mask = labels_hw == label
        area = int(mask.sum())
        if area < 9:
            continue
        region = zoom.region_yxyx(mask, np.zeros((0, 2)))
        size = max(region[2] - region[0], region[3] - region[1]) + 1
        if size < 0.45 * min(h, w):
            options.append((label, region, area))
    if not options:
        return None
    weights = np.array([1.0 / np.sqrt(a) for _, _, a in options])
    label, region, _ = options[rng.choice(len(options), p=weights / weights.sum())]
    crop = zoom.crop_around(region, (h, w), expand=float(rng.uniform(1.4, 2.0)))
    side = crop[2] - crop[0]
    shift = rng.integers(-side // 10, side // 10 + 1, size=2)
    top = int(np.clip(crop[0] + shift[0], 0, h - side))
    left = int(np.clip(crop[1] + shift[1], 0, w - side))
    return np.array([top, left, top + side, left + side]), int(label)


def _superpixels(image_model: np.ndarray, rng) -> np.ndarray:
    from skimage.segmentation import felzenszwalb

    scale = float(rng.choice([50, 100, 200]))
    return felzenszwalb(image_model, scale=scale, sigma=0.8, min_size=40).astype(np.int16)


def _records_of_volume(src: VolumeSource, root: Path, rng) -> Iterator[tuple[dict, dict]]:
    """(metadata, arrays before embedding) for every record of one volume."""
    scan = load_nifti(root / src.image)
    labels_vol = np.asarray(load_nifti(root / src.labels).data_zyx)
    volume = np.asarray(scan.data_zyx)
    if labels_vol.shape != volume.shape:
        logger.warning("%s: labels %s != scan %s, skipped", src.name, labels_vol.shape, volume.shape)
        return
    labels_vol = labels_vol.astype(np.int64)
    if src.label_ids:
        labels_vol = np.where(np.isin(labels_vol, src.label_ids), labels_vol, 0)
    spacing = tuple(float(s) for s in scan.spacing_zyx_mm)
    axes = [0] if not src.contiguous else _axes(spacing, volume.shape)
    for axis in axes:
        present = np.flatnonzero(np.moveaxis(labels_vol, axis, 0).reshape(volume.shape[axis], -1).any(1))
        cap = SLICES_AXIAL if axis == 0 else SLICES_OTHER
        if not src.contiguous:
            cap = len(present)
        chosen = present if len(present) <= cap else present[np.linspace(0, len(present) - 1, cap).astype(int)]
        for index in chosen:
            image = np.take(volume, index, axis=axis).astype(np.float32)
            lab = np.take(labels_vol, index, axis=axis)
            nbrs = []
            for off in NEIGHBOUR_OFFSETS:
                j = index + off
                ok = src.contiguous and 0 <= j < volume.shape[axis]
                nbrs.append(np.take(labels_vol, j, axis=axis) if ok else np.zeros_like(lab))
            window = choose_window(src, volume, rng)
            windowed = window.apply(image)
            flip = bool(rng.random() < AUGMENT_PROBABILITY)
            gamma = float(rng.uniform(0.7, 1.5)) if rng.random() < AUGMENT_PROBABILITY else 1.0
            if flip:
                windowed, lab = windowed[:, ::-1], lab[:, ::-1]
                nbrs = [n[:, ::-1] for n in nbrs]
            if gamma != 1.0:
                windowed = windowed**gamma
            spacing_axis = spacing[axis]
            base = {
                "volume": src.name, "patient": src.patient, "split": src.split, "axis": axis,
                "index": int(index), "window": [window.lo, window.hi], "flip": flip,
                "gamma": gamma, "spacing_mm": spacing_axis, "contiguous": src.contiguous,
                "hw": list(lab.shape),
            }
            ids = [int(v) for v in np.unique(lab) if v]
            crops = [None]
            if rng.random() < CROP_PROBABILITY:
                found = _small_object_crop(lab, ids, rng)
                if found is not None:
                    crops.append(found)
            for crop in crops:
                meta = dict(base, crop=None, crop_label=None)
                img, l2, n2 = windowed, lab, nbrs
                if crop is not None:
                    (y0, x0, y1, x1), label = crop
                    img, l2 = windowed[y0:y1, x0:x1], lab[y0:y1, x0:x1]
                    n2 = [n[y0:y1, x0:x1] for n in nbrs]
                    meta.update(crop=[int(y0), int(x0), int(y1), int(x1)], crop_label=label)
                lab_model = nearest_resize(np.ascontiguousarray(l2)).astype(np.int16)
                if not lab_model.any():
                    continue
                img = np.ascontiguousarray(img, dtype=np.float32)
                arrays = {
                    "image": img,
                    "lab": lab_model,
                    "nbr": np.stack([nearest_resize(np.ascontiguousarray(n)) for n in n2]).astype(np.int16),
                    "spx": _superpixels(nearest_resize(img), rng),
                }
                meta["labels"] = sorted(int(v) for v in np.unique(lab_model) if v)
                yield meta, arrays


def build_store(
    sources: list[VolumeSource],
    root: str | Path,
    folder: str | Path,
    encoder: Encoder,
    capacity: int = 4000,
    seed: int = 0,
    batch: int = 8,
) -> SliceStore:
    """Embed every record of ``sources`` into the store at ``folder`` (resumable).

    Parameters
    ----------
    sources : list of VolumeSource
    root : str or Path
        Data root the sources' paths are relative to.
    folder : str or Path
        Store folder; an existing store built with the same settings is resumed.
    encoder : callable
        list of (H, W) float32 [0, 1] slices -> (B, C, h, w) float embeddings
        (the app's preprocessing and image encoder).
    capacity : int
        Records allocated.
    seed : int
        Record sampling and augmentation seed (records are deterministic per seed).
    batch : int
        Records per encoder call.
    """
    settings = {"seed": seed, "sources": [s.name for s in sources], "side": SIDE}
    store = SliceStore(folder, capacity=capacity, settings=settings)
    done = store.count
    rng = np.random.default_rng(seed)
    position = 0
    pending: list[tuple[dict, dict]] = []

    def flush() -> None:
        embeddings = np.asarray(encoder([a["image"] for _, a in pending]), np.float16)
        store.append(
            [m for m, _ in pending],
            {
                "emb": embeddings,
                "lab": np.stack([a["lab"] for _, a in pending]),
                "nbr": np.stack([a["nbr"] for _, a in pending]),
                "spx": np.stack([a["spx"] for _, a in pending]),
            },
        )
        logger.info("store: %d records", store.count)
        pending.clear()

    for src in sources:
        for meta, arrays in _records_of_volume(src, Path(root), rng):
            position += 1
            if position <= done:
                continue  # embedded by an earlier, interrupted build
            if store.count + len(pending) >= store.capacity:
                break
            pending.append((meta, arrays))
            if len(pending) == batch:
                flush()
    if pending:
        flush()
    return store
