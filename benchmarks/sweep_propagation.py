"""Sweep propagation's stop thresholds with a real engine on a labelled scan.

For each organ, the truth's mask on the slice where the organ is largest seeds
:func:`napari_medsam.tasks.propagate.propagate`, run up and down with no stop
rule but an empty mask (``stop_score=-inf``, ``stop_overlap=0``,
``min_area=1``); every predicted slice's score, IoU with the previous slice's
mask and area are recorded. Each slice is prompted from the slice before and a
stop depends only on the slices before, so a run with thresholds T is the
recorded chain cut at its first slice where
:func:`~napari_medsam.tasks.propagate.ends_direction` holds: every threshold
pair is replayed offline from one model run per organ, and scored by the 3D
Dice of seed + kept slices against the truth.

The defaults reproduce the measurement behind
``napari_medsam.tasks.propagate.DEFAULT_STOP_OVERLAP``: the bundled LiteMedSAM
on CPU, ``totalseg_ct_full`` (liver 5, spleen 1, kidney R 2, kidney L 3,
bladder 21), window 40/400, box of the previous slice + 2 px. No Qt is needed.

Usage::

    python -u benchmarks/sweep_propagation.py > sweep.txt 2>&1
    python -u benchmarks/sweep_propagation.py --organs 1,2 --margin 4 --trace
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_medsam._cli.eval import (
    _choose_window,
    _label_names,
    _load_engine,
    load_scan_and_labels,
    set_threads,
)
from napari_medsam.evaluation.metrics import dice
from napari_medsam.evaluation.protocol3d import dice3d
from napari_medsam.tasks.propagate import (
    DEFAULT_BOX_MARGIN,
    DEFAULT_MIN_AREA,
    DEFAULT_STOP_OVERLAP,
    DEFAULT_STOP_SCORE,
    ends_direction,
    mask_iou,
    propagate,
)
from napari_medsam.types import SliceMask

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalseg_ct_full"
#: Thresholds replayed; None: that rule is off.
SCORES = (None, 0.7, 0.75, 0.8, 0.85, 0.9)
OVERLAPS = (None, 0.2, 0.4, 0.5, 0.6, 0.7)


@dataclass(frozen=True)
class SliceRecord:
    """One predicted slice of an unstopped propagation chain."""

    z: int
    mask_yx: np.ndarray  # (Y, X) bool
    score: float  # the model's predicted IoU
    overlap: float  # IoU with the previous slice's mask (the seed for the first)
    area: int  # pixels


def record_chains(
    engine, image_zyx, window, seed_z: int, seed_yx, label: int, margin: int, key_prefix
) -> list[list[SliceRecord]]:
    """Propagate from ``seed_yx`` on ``seed_z`` up, then down, stopping only at an empty mask.

    Returns
    -------
    list of list of SliceRecord
        The up chain (increasing z) and the down chain, each in propagation order.
    """
    items = propagate(
        engine, image_zyx, window, seed_z, seed_yx, label, 0, key_prefix,
        stop_score=-math.inf, stop_overlap=0.0, min_area=1, box_margin=margin,
    )  # fmt: skip
    masks = [m for m in items if isinstance(m, SliceMask)]
    chains = []
    for side in (lambda z: z > seed_z, lambda z: z < seed_z):  # propagate's order
        chain, prev = [], np.asarray(seed_yx, bool)
        for m in (m for m in masks if side(m.z)):
            area = int(np.count_nonzero(m.mask_yx))
            chain.append(SliceRecord(m.z, m.mask_yx, m.score, mask_iou(m.mask_yx, prev), area))
            prev = m.mask_yx
        chains.append(chain)
    return chains


def replay(
    chains, stop_score: float | None, stop_overlap: float | None, min_area: int
) -> list[SliceRecord]:
    """The slices a run with these thresholds paints (None: that rule off)."""
    score = -math.inf if stop_score is None else stop_score
    overlap = 0.0 if stop_overlap is None else stop_overlap
    kept = []
    for chain in chains:
        for r in chain:
            if ends_direction(r.area, r.score, r.overlap, score, overlap, min_area):
                break
            kept.append(r)
    return kept


def volume_dice(gt_zyx, seed_z: int, seed_yx, kept: list[SliceRecord]) -> float:
    """3D Dice of the seed slice plus the kept slices against the truth (Z, Y, X) bool."""
    pred = np.zeros_like(gt_zyx)
    pred[seed_z] = seed_yx
    for r in kept:
        pred[r.z] = r.mask_yx
    return dice3d(pred, gt_zyx)


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def _print_trace(gt_zyx, chains) -> None:
    print("      z  area  truth  score  overlap  slice Dice")
    for chain in chains:
        for r in chain:
            d = dice(r.mask_yx, gt_zyx[r.z])
            truth = int(np.count_nonzero(gt_zyx[r.z]))
            print(
                f"    {r.z:3d} {r.area:5d} {truth:6d}  {r.score:.3f}   {r.overlap:.3f}     {d:.3f}"
            )


def _print_tables(names, results, defaults) -> None:
    def mean(setting):
        return float(np.mean([results[n][setting] for n in names]))

    best = max(results[names[0]], key=mean)
    print("\nmean 3D Dice (rows: stop_score, columns: stop_overlap; * = current defaults)")
    print("score \\ overlap" + "".join(f"{_fmt(o):>8}" for o in OVERLAPS))
    for s in SCORES:
        cells = [f"{mean((s, o)):.3f}" + ("*" if (s, o) == defaults else " ") for o in OVERLAPS]
        print(f"{_fmt(s):>15}" + "".join(f"{c:>8}" for c in cells))
    print("\nper organ (3D Dice)")
    widths = [max(6, len(n)) for n in names]
    head = "".join(f" {n:>{w}}" for n, w in zip(names, widths, strict=True))
    print(f"{'score':>6} {'overlap':>8} {'mean':>6}{head}")
    for s in SCORES:
        for o in OVERLAPS:
            tag = "  <- defaults" if (s, o) == defaults else ""
            tag += "  <- best" if (s, o) == best else ""
            per = "".join(
                f" {results[n][(s, o)]:{w}.3f}" for n, w in zip(names, widths, strict=True)
            )
            print(f"{_fmt(s):>6} {_fmt(o):>8} {mean((s, o)):6.3f}{per}{tag}")
    print(f"\nbest: score {_fmt(best[0])}, overlap {_fmt(best[1])}: {mean(best):.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", default=str(DATA / "example_ct.nii.gz"))
    parser.add_argument("--labels", default=str(DATA / "example_seg_fast_force_split.nii.gz"))
    parser.add_argument("--organs", default="5,1,2,3,21", help="comma-separated label ids")
    parser.add_argument("--margin", type=int, default=DEFAULT_BOX_MARGIN,
                        help="pixels added around the previous slice's box")  # fmt: skip
    parser.add_argument("--min-area", type=int, default=DEFAULT_MIN_AREA,
                        help="minimum mask area of every replayed run")  # fmt: skip
    parser.add_argument("--window", default="40,400", help="LEVEL,WIDTH ('' = the app's auto)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", default=None, help="default: the bundled LiteMedSAM")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--trace", action="store_true", help="print every recorded slice")
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.margin < 0:
        parser.error("--margin must not be negative")
    organs = [int(v) for v in args.organs.split(",") if v.strip()]
    scan, image_zyx, labels_zyx = load_scan_and_labels(args.scan, args.labels)
    window, window_text = _choose_window(args.window, image_zyx)
    label_names = _label_names(args.labels)
    engine = _load_engine(args.checkpoint, args.device)
    print(
        f"sweep_propagation: {engine.name} on {args.device}, {Path(args.scan).name} "
        f"{image_zyx.shape}, box margin {args.margin} px, min area {args.min_area} px"
    )
    print(window_text)
    names, results, rows = [], {}, {}
    for organ in organs:
        gt = labels_zyx == organ
        if not gt.any():
            print(f"label {organ}: not in the labels, skipped")
            continue
        name = label_names.get(organ, f"label {organ}")
        areas = gt.sum(axis=(1, 2))
        z0 = int(np.argmax(areas))
        t0 = time.perf_counter()
        chains = record_chains(
            engine, image_zyx, window, z0, gt[z0], organ, args.margin, ("sweep", args.scan)
        )
        zs = np.flatnonzero(areas)
        reached = sorted(r.z for chain in chains for r in chain) or [z0]
        print(
            f"{name} ({organ}): seed z={z0}, truth on z {zs[0]}..{zs[-1]} ({len(zs)} slices), "
            f"unstopped chain z {reached[0]}..{reached[-1]} "
            f"({sum(map(len, chains))} predictions, {time.perf_counter() - t0:.0f} s)"
        )
        if args.trace:
            _print_trace(gt, chains)
        names.append(name)
        results[name] = {
            (s, o): volume_dice(gt, z0, gt[z0], replay(chains, s, o, args.min_area))
            for s in SCORES
            for o in OVERLAPS
        }
        rows[name] = [
            {"z": r.z, "area": r.area, "score": r.score, "overlap": r.overlap}
            for chain in chains
            for r in chain
        ]
    if not names:
        print("no organ to sweep")
        return 1
    _print_tables(names, results, (DEFAULT_STOP_SCORE, DEFAULT_STOP_OVERLAP))
    if args.json_path:
        out = {
            "engine": engine.name,
            "scan": str(Path(args.scan).resolve()),
            "margin": args.margin,
            "min_area": args.min_area,
            "dice": {
                n: [{"stop_score": s, "stop_overlap": o, "dice": d} for (s, o), d in r.items()]
                for n, r in results.items()
            },
            "slices": rows,
        }
        Path(args.json_path).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
