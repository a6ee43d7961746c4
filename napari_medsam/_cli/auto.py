"""``napari-medsam auto``: a prompt-free first segmentation of a whole scan.

::

    napari-medsam auto SCAN --engine mip-unet --checkpoint mip.pt --out bone.nii.gz

The labels land on the scan's own grid (its affine kept), written atomically, with
the names sidecars (``.labels.json``, ITK-SNAP, Slicer) beside them. Every check
(output path, checkpoint, scan) happens before anything is written: a failure
leaves no output and never touches an existing file.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

ENGINES = ("mip-unet", "slice-unet")
#: engine -> bundled checkpoint file name in napari_medsam/resources (shipped when trained)
BUNDLED = {"mip-unet": "auto_mip_unet_bone.pt", "slice-unet": "auto_slice_unet_bone.pt"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "auto",
        help="segment a CT scan with no prompt (projection 2.5D U-Net for bone)",
        description="Run an automatic engine on a whole scan and write its labels on the "
        "scan's grid, with the names sidecars. The result is a proposal: open it in the "
        "app and correct it with clicks.",
    )
    parser.add_argument("scan", help="CT scan in HU (.nii/.nii.gz, .nrrd, .mha, DICOM folder)")
    parser.add_argument("--engine", choices=ENGINES, required=True)
    parser.add_argument(
        "--out", required=True, help="labels to write (.nii.gz, .nrrd, .mha, folder)"
    )
    parser.add_argument(
        "--checkpoint", help="engine weights (default: the bundled ones, if shipped)"
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="probability cut (0.5)")
    parser.add_argument("--label", type=int, default=1, help="label value of the target (1)")
    parser.add_argument("--name", help="object name in the sidecars (default: the model's target)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.set_defaults(func=run)
    return parser


def _checkpoint(args) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint).expanduser()
    bundled = resources.files("napari_medsam") / "resources" / BUNDLED[args.engine]
    if not bundled.is_file():
        raise ValueError(f"no bundled {args.engine} weights in this build: give --checkpoint CKPT "
                         "(train one with `napari-medsam train-auto`)")  # fmt: skip
    return Path(str(bundled))


def run(args: argparse.Namespace) -> int:
    """Segment ``args.scan`` and write ``args.out``; returns the exit code."""
    import numpy as np
    import torch

    from napari_medsam.io.atomic import check_output_path
    from napari_medsam.io.volumes import labels_format, load_volume, save_labels
    from napari_medsam.model.mipunet.checkpoint import load_auto_model
    from napari_medsam.model.mipunet.inference import segment_volume
    from napari_medsam.session.labels import LabelInfo, LabelRegistry
    from napari_medsam.session.presets import default_color

    if not 0 < args.label < 256:
        raise ValueError(f"--label must be in 1..255, got {args.label}")
    if not 0.0 < args.threshold < 1.0:
        raise ValueError(f"--threshold must be in (0, 1), got {args.threshold}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    checkpoint = _checkpoint(args)
    kind = labels_format(args.out)
    check_output_path(args.out, "--out", [args.scan, checkpoint], allow_dir=kind == "dicom")
    model, card = load_auto_model(checkpoint, kind=args.engine)  # before the scan: fail fast
    volume = load_volume(args.scan)
    result = segment_volume(model, volume.data_zyx, volume.spacing_zyx_mm, args.threshold)
    labels_zyx = np.where(result.mask_zyx, np.uint8(args.label), np.uint8(0))
    out = save_labels(labels_zyx, args.out, volume.layer_metadata())
    name = args.name or str(card.get("target") or model.config.target)
    registry = LabelRegistry([LabelInfo(args.label, name, tuple(default_color(args.label)))])
    registry.save_sidecars(out)
    print(f"wrote {out}: {int(result.mask_zyx.sum())} voxels of {name} (label {args.label}) "
          f"in {result.seconds:.1f} s")  # fmt: skip
    return 0
