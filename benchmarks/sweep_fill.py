"""Fill between two boxed slices 6 apart: interpolation, model refinement, or propagation.

For each object of each case (``propagation_cases.py``) whose truth spans at
least ``--gap + 1`` slices, two slices ``--gap`` apart around its largest slice
are segmented from loose boxes (``napari_medsam.evaluation.boxes.loose_box``,
seeded); the slices between are then filled by
:func:`napari_medsam.tasks.fill.fill_between` with each ``refine``
(``none`` = signed-distance interpolation only, ``box``, ``box+mask``), and,
as the baseline without fill, by propagation from both boxed slices
(``napari-medsam segment --propagate``'s rule: each slice from the nearer seed).
Reported: Dice over the slices strictly between (a 3D Dice of that slab). The
row "truth anchors" interpolates the truth's own masks (the method's ceiling
without the model's anchor errors).

Usage::

    python -u benchmarks/sweep_fill.py > fill.txt 2>&1
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from propagation_cases import THICK_MM, add_sweep_args, loaded_cases, sweep_engine  # noqa: E402

from napari_medsam.evaluation.boxes import loose_box, loose_box_settings  # noqa: E402
from napari_medsam.evaluation.protocol3d import dice3d  # noqa: E402
from napari_medsam.tasks.fill import REFINES, fill_between  # noqa: E402
from napari_medsam.tasks.propagate import propagate  # noqa: E402
from napari_medsam.tasks.propagate_options import PropagationOptions  # noqa: E402
from napari_medsam.tasks.segment import embed_slice, predict_slice  # noqa: E402
from napari_medsam.types import SliceMask, SlicePrompt  # noqa: E402


def anchors_for(gt, gap: int):
    """(a, b) slices ``gap`` apart inside the truth's extent, centred on its largest slice."""
    areas = gt.sum(axis=(1, 2))
    zs = np.flatnonzero(areas)
    if zs[-1] - zs[0] < gap:
        return None
    z0 = int(np.argmax(areas))
    a = int(np.clip(z0 - gap // 2, zs[0], zs[-1] - gap))
    return a, a + gap


def between_dice(pred_by_z: dict, gt, a: int, b: int) -> float:
    pred = np.zeros_like(gt[a + 1 : b])
    for z, m in pred_by_z.items():
        if a < z < b:
            pred[z - a - 1] = m
    return dice3d(pred, gt[a + 1 : b])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_args(parser)
    parser.add_argument("--gap", type=int, default=6, help="slices between the two boxed slices")
    args = parser.parse_args(argv)
    if args.window_mode not in ("case", "display"):
        parser.error("sweep_fill takes --window-mode case or display (one window per scan)")
    engine = sweep_engine(args)
    methods = ["truth anchors, interpolation", *[f"fill, refine {r}" for r in REFINES],
               "propagation from both"]  # fmt: skip
    print(f"sweep_fill: {engine.name}, gap {args.gap}, boxes {loose_box_settings(args.seed)}")
    rows = []
    for case, _, image_zyx, labels_zyx, window, _, spacing in loaded_cases(args.cases, args.data_root, args.window_mode):
        key_prefix = ("sweep", case.scan)
        for label in case.label_ids:
            gt = labels_zyx == label
            ab = anchors_for(gt, args.gap) if gt.any() else None
            if ab is None:
                print(f"{case.name} label {label}: spans fewer than {args.gap + 1} slices, skipped")
                continue
            a, b = ab
            rng = np.random.default_rng([args.seed, zlib.crc32(case.name.encode()), label, 6])
            anchors = {}
            for z in (a, b):
                embedded = embed_slice(engine, image_zyx, window, z, key_prefix)
                box = loose_box(gt[z], rng)
                anchors[z] = predict_slice(engine, embedded, SlicePrompt(box_yxyx=box), label).mask_yx
            truth = {z: gt[z] for z in (a, b)}
            dices = [between_dice(_filled(None, image_zyx, window, truth, "none", key_prefix,
                                          spacing), gt, a, b)]  # fmt: skip
            for refine in REFINES:
                filled = _filled(engine, image_zyx, window, anchors, refine, key_prefix, spacing)
                dices.append(between_dice(filled, gt, a, b))
            propagated = _propagated_between(engine, image_zyx, window, anchors, key_prefix, spacing)
            dices.append(between_dice(propagated, gt, a, b))
            rows.append((case.name, label, spacing[0], a, b, dices))
            print(f"{case.name} label {label} slices {a},{b}: "
                  + ", ".join(f"{d:.3f}" for d in dices), flush=True)  # fmt: skip
    if not rows:
        print("nothing to fill")
        return 1
    print(f"\nDice on the {args.gap - 1} slices between two boxed slices {args.gap} apart")
    print(f"{'object':30s}" + "".join(f"{m[:14]:>15s}" for m in methods))
    for name, label, _, a, b, dices in rows:
        print(f"{name[:22] + ' ' + str(label):30s}" + "".join(f"{d:15.3f}" for d in dices))
    for group, keep in (("thick (>= 5 mm)", lambda s: s >= THICK_MM), ("thin", lambda s: s < THICK_MM),
                        ("all", lambda s: True)):  # fmt: skip
        sel = [r[5] for r in rows if keep(r[2])]
        if sel:
            print(f"{'mean ' + group:30s}" + "".join(f"{d:15.3f}" for d in np.mean(sel, axis=0)))
    return 0


def _propagated_between(engine, image_zyx, window, anchors, key_prefix, spacing) -> dict:
    """Propagation inwards from both boxed slices, each slice from the nearer one (the lower
    on a tie), as ``segment --propagate --between propagate`` paints the gap."""
    (a, mask_a), (b, mask_b) = sorted(anchors.items())
    nearest: dict[int, tuple[int, np.ndarray]] = {}
    for z0, mask, direction in ((a, mask_a, "up"), (b, mask_b, "down")):
        options = PropagationOptions(
            locked_zs={a, b}, locked_masks=anchors, stop_at_locked=True, direction=direction,
            spacing_zyx_mm=spacing,
        )  # fmt: skip
        for m in propagate(engine, image_zyx, window, z0, mask, 1, key_prefix, options):
            if isinstance(m, SliceMask) and (m.z not in nearest or abs(m.z - z0) < nearest[m.z][0]):
                nearest[m.z] = (abs(m.z - z0), m.mask_yx)
    return {z: mask for z, (_, mask) in nearest.items()}


def _filled(engine, image_zyx, window, anchors, refine, key_prefix, spacing) -> dict:
    items = fill_between(engine, image_zyx, window, anchors, 1, key_prefix, refine=refine,
                         spacing_zyx_mm=spacing)  # fmt: skip
    return {m.z: m.mask_yx for m in items if isinstance(m, SliceMask)}


if __name__ == "__main__":
    sys.exit(main())
