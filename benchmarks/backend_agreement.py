"""Fast backend vs torch fp32 on real organs: Dice between the two paths' masks, box prompts.

    PYTHONPATH=$PWD python benchmarks/backend_agreement.py --labels 1,2,5,6,7,52 \
        --max-slices 12 --precision auto

Reads ``../shared/data/totalseg_ct_full`` (CT, soft-tissue window 40/400) and
prints one row per organ: slices, mean and minimum Dice between torch fp32 and
the fast backend, and each path's mean Dice to the reference labels. The
acceptance bar is mean >= 0.99 and every slice >= 0.97.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "totalseg_ct_full"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--labels", default="1,2,3,5,6,7,52")
    parser.add_argument("--max-slices", type=int, default=12, help="per organ, evenly spaced")
    parser.add_argument("--min-area", type=int, default=30)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from napari_medsam._cli._common import load_scan_and_labels
    from napari_medsam.evaluation.agreement import (
        box_agreement,
        object_slices,
        summarize_agreement,
    )
    from napari_medsam.model.engine import SamEngine, load_engine
    from napari_medsam.prompts.intensity import IntensityWindow

    names = json.loads((args.data / "classes.json").read_text())
    _, image_zyx, labels_zyx = load_scan_and_labels(
        args.data / "example_ct.nii.gz", args.data / "example_seg_fast_force_split.nii.gz"
    )
    window = IntensityWindow.from_level_width(40, 400, kind="manual")
    reference = load_engine(device="cpu", backend="torch")
    fast = SamEngine(
        reference.model,
        reference.config,
        device="cpu",
        backend=args.backend,
        precision=args.precision,
        background=False,
    )
    labels = [int(v) for v in args.labels.split(",")]
    cases = object_slices(labels_zyx, labels, args.min_area, args.max_slices)
    rows = box_agreement(reference, fast, image_zyx, labels_zyx, window, cases, "totalseg")
    print(f"fast path: {fast.backend}; slices along axis 0 of {image_zyx.shape}")
    print("| organ | slices | mean Dice torch vs fast | min Dice | Dice torch vs GT | Dice fast vs GT |")
    print("| --- | --- | --- | --- | --- | --- |")
    report = {"fast": fast.backend, "organs": {}}
    for label in labels + [None]:
        mine = [r for r in rows if label is None or r.label == label]
        s = summarize_agreement(mine)
        if not s["n_slices"]:
            continue
        name = "all" if label is None else names.get(str(label), str(label))
        report["organs"][name] = s
        print(
            f"| {name} | {s['n_slices']} | {s['mean_dice_between']:.4f} | "
            f"{s['min_dice_between']:.4f} | {s['mean_dice_ref_gt']:.3f} | "
            f"{s['mean_dice_fast_gt']:.3f} |"
        )
    if args.json_path:
        from napari_medsam.io.atomic import atomic_write_text

        atomic_write_text(args.json_path, json.dumps(report, indent=1) + "\n")
    worst = min(rows, key=lambda r: r.dice_between)
    print(f"worst slice: label {worst.label} z {worst.z} Dice {worst.dice_between:.4f}")


if __name__ == "__main__":
    main()
