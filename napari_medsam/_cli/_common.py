"""What ``eval`` (2D) and ``eval --protocol 3d`` share: threads, the engine, the window,
the scan and its labels, the output checks.

Its own module so that neither command imports the other's (``eval`` hands the 3D
protocol to :mod:`napari_medsam._cli.eval3d`). Tests replace :func:`load_engine`
here to run the commands on a fake engine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def set_threads(threads: int | None) -> None:
    """Set torch's CPU thread count when asked (a shared or loaded machine runs faster with 1)."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError("--threads must be at least 1")
    import torch

    torch.set_num_threads(threads)


def device_of(engine, args) -> str:
    """The device the engine really runs on ("cpu", "cuda"), not the request ("auto")."""
    return str(getattr(engine, "device", None) or args.device)


def load_engine(checkpoint: str | None, device: str, **options):
    """The app's engine loader (looked up at call time; tests replace this function).

    ``options``: ``backend``, ``precision``, ``background`` of ``load_engine``.
    """
    from napari_medsam.model import engine

    return engine.load_engine(checkpoint=checkpoint, device=device, **options)


def choose_window(text: str | None, image_zyx: np.ndarray):
    """Return (IntensityWindow, human description) from ``--window`` or the app's auto rule."""
    from napari_medsam.prompts import intensity

    if text:
        try:
            level, width = (float(v) for v in text.split(","))
        except ValueError as err:
            raise ValueError(f"--window must be LEVEL,WIDTH (e.g. 40,400), got {text!r}") from err
        if width <= 0:
            raise ValueError("--window width must be positive")
        window = intensity.IntensityWindow.from_level_width(level, width, kind="manual")
        return window, f"user window L/W {level:g}/{width:g} -> [{window.lo:g}, {window.hi:g}]"
    window = intensity.auto_window(image_zyx)
    if window.kind == "ct":
        rule = "CT soft tissue L/W 40/400 (intensities look like HU)"
    else:
        rule = "MR 0.5-99.5 percentiles (intensities do not look like HU)"
    return window, f"auto window: {rule} -> [{window.lo:g}, {window.hi:g}]"


def label_names(labels_path: str) -> dict[int, str]:
    """Names from a ``classes.json`` ({"id": "name"}) beside the label file, if there is one."""
    candidate = Path(labels_path).with_name("classes.json")
    if not candidate.is_file():
        return {}
    try:
        raw = json.loads(candidate.read_text())
        return {int(k): str(v) for k, v in raw.items()}
    except (ValueError, AttributeError):
        return {}


def load_scan_and_labels(scan_path, labels_path):
    """Load a scan and its label map on the same display grid.

    Returns
    -------
    scan : NiftiVolume
        The loaded scan (spacing, affine).
    image_zyx : np.ndarray
        (Z, Y, X) stored intensities.
    labels_zyx : np.ndarray
        (Z, Y, X) integer label ids (float label files are rounded).
    """
    from napari_medsam.io.volumes import load_volume

    scan = load_volume(scan_path)
    image_zyx = np.asarray(scan.data_zyx)
    truth = load_volume(labels_path)
    labels_zyx = np.asarray(truth.data_zyx)
    if tuple(scan.file_shape) != tuple(truth.file_shape) or image_zyx.shape != labels_zyx.shape:
        raise ValueError(
            f"scan {tuple(scan.file_shape)} and labels {tuple(truth.file_shape)} are not on the "
            "same grid (file shapes differ)"
        )
    if not np.allclose(scan.affine_ras, truth.affine_ras, atol=1e-3):
        # same shape, another placement (e.g. mirrored): the Dice would be meaningless
        raise ValueError(
            f"{Path(labels_path).name} is not on the scan's grid: its affine differs from the "
            f"scan's (largest difference {np.abs(scan.affine_ras - truth.affine_ras).max():.3g})"
        )
    if not np.issubdtype(labels_zyx.dtype, np.integer):
        labels_zyx = np.rint(labels_zyx).astype(np.int32)
    return scan, image_zyx, labels_zyx


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse ``--json`` / ``--plot`` paths that are inputs or not writable, before any work."""
    from napari_medsam.io.atomic import check_output_path

    inputs = [args.scan, args.labels_path, args.checkpoint, *_classes_json(args.labels_path)]
    outputs = [(getattr(args, "json_path", None), "--json", (".json",))]
    outputs.append((getattr(args, "plot_path", None), "--plot", (".png", ".pdf", ".svg")))
    seen = []
    for path, what, suffixes in outputs:
        if path:
            check_output_path(path, what, [*inputs, *seen], suffixes)
            seen.append(path)


def _classes_json(labels_path) -> list[Path]:
    candidate = Path(labels_path).with_name("classes.json")
    return [candidate] if candidate.is_file() else []
