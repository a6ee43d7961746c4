"""The labelled scans the 3D benchmarks run on, thick and thin, and an embedding disk cache.

Used by ``sweep_propagation.py`` and ``sweep_fill.py`` (run as scripts from this
folder). Each case is one scan with the objects to propagate, the window that
fits them (the lung window for the lung nodule) and its slice thickness group.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np



def _find_data() -> Path:
    """``shared/data`` beside the project (also from a git worktree elsewhere)."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return Path(__file__).resolve().parents[2] / "shared" / "data"


DATA = _find_data()
#: How the model's window is chosen: the case's own (``Case.window``), the display's
#: (the app's auto window), or from the object's box (``prompts.object_window``).
WINDOW_MODES = ("case", "display", "preset", "percentile")
#: Slices at least this thick (mm) count as "thick" in the tables.
THICK_MM = 5.0


@dataclass(frozen=True)
class Case:
    """One scan and the objects on it."""

    name: str
    scan: str  # relative to DATA
    labels: str
    label_ids: tuple[int, ...]
    window: str | None  # "LEVEL,WIDTH", or None for the app's auto window


CASES = {
    "lung1": Case("lung1 CT nodule", "pyrad_lung1/lung1_image.nii.gz",
                  "pyrad_lung1/lung1_label.nii.gz", (1,), "-600,1500"),
    "brain2": Case("brain2 MR lesion", "pyrad_brain2/image.nii.gz",
                   "pyrad_brain2/label.nii.gz", (1,), None),
    "t2s": Case("t2s MR grey matter", "spinalcord_mri/t2s/image.nii.gz",
                "spinalcord_mri/t2s/label.nii.gz", (1,), None),
    "sts002": Case("STS_002 CT sarcoma", "sts_sarcoma/STS_002_CT/image.nii.gz",
                   "sts_sarcoma/STS_002_CT/label.nii.gz", (1,), "40,400"),
    "sts003": Case("STS_003 CT sarcoma", "sts_sarcoma/STS_003_CT/image.nii.gz",
                   "sts_sarcoma/STS_003_CT/label.nii.gz", (1,), "40,400"),
    "totalseg": Case("totalseg CT organs", "totalseg_ct_full/example_ct.nii.gz",
                     "totalseg_ct_full/example_seg_fast_force_split.nii.gz",
                     (5, 1, 2, 3, 21), "40,400"),
    "totalseg2": Case("totalseg CT spleen+kidney", "totalseg_ct_full/example_ct.nii.gz",
                      "totalseg_ct_full/example_seg_fast_force_split.nii.gz", (1, 2), "40,400"),
}  # fmt: skip
#: ``all``: every scan once (``totalseg2`` is the cheap subset of ``totalseg``).
ALL = tuple(k for k in CASES if k != "totalseg2")


def parse_cases(text: str) -> list[Case]:
    """``all`` or comma-separated keys of :data:`CASES`."""
    keys = ALL if text == "all" else tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in keys if k not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; choose from {', '.join(ALL)} or 'all'")
    return [CASES[k] for k in keys]


def load_case(case: Case, root: Path = DATA, window_mode: str = "case"):
    """(scan, image_zyx, labels_zyx, window, window_text) of a case; None when the data is missing.

    ``window_mode`` other than ``"case"``: the app's auto (display) window; the
    object rules start from it (:func:`object_window_for`).
    """
    from napari_medsam._cli._common import choose_window, load_scan_and_labels

    scan_path, labels_path = Path(root) / case.scan, Path(root) / case.labels
    if not (scan_path.is_file() and labels_path.is_file()):
        return None
    scan, image_zyx, labels_zyx = load_scan_and_labels(scan_path, labels_path)
    window, window_text = choose_window(case.window if window_mode == "case" else None, image_zyx)
    return scan, image_zyx, labels_zyx, window, window_text


def add_sweep_args(parser: argparse.ArgumentParser) -> None:
    """The options both sweeps take: cases, box seed, device, checkpoint, threads, embedding cache."""
    parser.add_argument("--cases", default="all", help="'all' or keys of propagation_cases.CASES")
    parser.add_argument("--data-root", type=Path, default=DATA, help=f"default {DATA}")
    parser.add_argument("--window-mode", choices=WINDOW_MODES, default="case",
                        help="model window: the case's, the display's (auto), or chosen per "
                             "object from its box: CT preset or box percentiles")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the loose boxes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", default=None,
                        help="default: the app's default engine (LiteMedSAM + the shipped click "
                             "decoder; a box alone still goes to the bundled decoder); "
                             "'litemedsam': the bundled model alone")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--embed-cache", default="/tmp/medsam-bench-embeddings",
                        help="folder for slice embeddings kept between runs ('' = none)")  # fmt: skip


def sweep_engine(args: argparse.Namespace):
    """Set the thread count and load the engine of :func:`add_sweep_args`' options."""
    from napari_medsam._cli._common import set_threads

    set_threads(args.threads)
    return cached_engine(args.checkpoint, args.device, args.embed_cache or None)


def loaded_cases(text: str, root: Path = DATA, window_mode: str = "case"):
    """Yield ``(case, scan, image_zyx, labels_zyx, window, window_text, spacing_zyx_mm)``.

    For each case of :func:`parse_cases` ``(text)`` whose data is present under
    ``root``; a case whose data is missing is said in one line and skipped.
    """
    for case in parse_cases(text):
        loaded = load_case(case, root, window_mode)
        if loaded is None:
            print(f"{case.name}: data missing, skipped")
            continue
        scan = loaded[0]
        yield (case, *loaded, tuple(float(v) for v in scan.spacing_zyx_mm))


def object_window_for(window_mode: str, display, image_zyx, z: int, box_yxyx):
    """The window of one object's run: ``display`` for ``"case"``/``"display"`` and for
    non-CT scans, else :func:`napari_medsam.prompts.object_window.window_for_prompt`."""
    from napari_medsam.prompts.intensity import looks_like_ct
    from napari_medsam.prompts.object_window import window_for_prompt

    if window_mode in ("case", "display"):
        return display
    is_ct = looks_like_ct(image_zyx)
    return window_for_prompt(window_mode, display, np.asarray(image_zyx[z]), box_yxyx, is_ct)


class DiskCachedEngine:
    """An engine whose slice embeddings are also kept on disk between benchmark runs.

    Only for engines whose embedding depends on the slice alone (not on clicks).
    Everything but :meth:`embed` is the wrapped engine's.
    """

    def __init__(self, engine, folder: Path, tag: str) -> None:
        self._engine = engine
        self._folder = Path(folder)
        self._folder.mkdir(parents=True, exist_ok=True)
        self._tag = tag

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def _path(self, key, hw) -> Path:
        digest = hashlib.sha1(repr((self._tag, key, tuple(hw))).encode()).hexdigest()
        return self._folder / f"{digest}.pt"

    def embed(self, image_yx, cache_key=None) -> None:
        import torch

        engine = self._engine
        if cache_key is None or cache_key in engine.cache:
            return engine.embed(image_yx, cache_key)
        hw = tuple(np.shape(image_yx))
        path = self._path(cache_key, hw)
        if path.is_file():
            engine.cache.put(cache_key, hw, torch.load(path, weights_only=True))
            return None
        engine.embed(image_yx, cache_key)
        embedding = engine.cache.get(cache_key, hw)
        if embedding is not None:
            tmp = path.with_suffix(".tmp")
            torch.save(embedding.cpu(), tmp)
            tmp.replace(path)
        return None


def cached_engine(checkpoint: str | None, device: str, folder: str | None):
    """The benchmark's engine, with the disk cache unless ``folder`` is None or clicks change embeddings."""
    from napari_medsam._cli._common import load_engine

    engine = load_engine(checkpoint, device)
    if folder is None or getattr(engine, "clicks_change_embedding", False):
        return engine
    source = "bundled"
    if checkpoint and Path(checkpoint).is_file():  # else "litemedsam": the bundled model
        stat = Path(checkpoint).stat()
        source = f"{Path(checkpoint).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    tag = f"{engine.name}|{source}"
    return DiskCachedEngine(engine, Path(folder), tag)
