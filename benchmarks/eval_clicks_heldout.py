"""Held-out click evaluation of an engine: the volumes the click model never saw.

Runs exactly what ``napari-medsam eval`` runs (``evaluation.runner.evaluate_volume``,
RITM clicker, the app's segment task, stop at IoU 0.90) on every held-out volume
of ``napari_medsam.training.clicks.sources``, on a seeded sample of object slices
per volume, and prints per-volume and per-label tables plus the acceptance checks
of the click model (Dice@1, NoC@85/90, a never-falling mean IoU curve, no object
worse at click 5 than at click 1, box + 3 clicks against the box alone).

    python benchmarks/eval_clicks_heldout.py --data-root ../shared/data --json out.json
        [--checkpoint litemedsam] [--zoom] [--cases-per-volume 16] [--max-clicks 20]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from napari_medsam.evaluation.cases import iter_cases, labels_present
from napari_medsam.evaluation.metrics import carried, summarize
from napari_medsam.evaluation.runner import evaluate_volume
from napari_medsam.io.atomic import atomic_write_text
from napari_medsam.io.nifti import load_nifti
from napari_medsam.model.engine import load_engine
from napari_medsam.prompts.intensity import IntensityWindow, auto_window
from napari_medsam.prompts.zoom import ZOOM_IN_BY_DEFAULT
from napari_medsam.training.clicks.sources import volumes


def window_for(src, image_zyx):
    if src.kind == "ct8":
        return IntensityWindow(0.0, 255.0, "manual")
    if src.name == "lung1":  # a user segments a lung nodule in the lung window
        return IntensityWindow.from_level_width(-600, 1500)
    return auto_window(image_zyx)


def sample_cases(labels_zyx, n: int, seed: int, min_area: int):
    cases = list(iter_cases(labels_zyx, labels_present(labels_zyx), min_area))
    if len(cases) <= n:
        return cases
    pick = np.random.default_rng(seed).choice(len(cases), size=n, replace=False)
    return [cases[i] for i in sorted(pick)]


def row(name: str, summary: dict) -> str:
    curve = summary["miou_curve"]
    d = summary["dice_at"]
    return (f"| {name} | {summary['n_cases']} | {summary['noc85']:.2f} | {summary['noc90']:.2f} | "
            f"{d['1']:.3f} | {d['3']:.3f} | {d['5']:.3f} | {curve[min(9, len(curve) - 1)]:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--zoom", choices=("on", "off"), default="on" if ZOOM_IN_BY_DEFAULT else "off",
                    help="zoom-in on small objects (default: the app's)")
    ap.add_argument("--cases-per-volume", type=int, default=16)
    ap.add_argument("--max-clicks", type=int, default=20)
    ap.add_argument("--min-area", type=int, default=100)
    ap.add_argument("--box-clicks", action="store_true", help="also box and box+3 clicks")
    ap.add_argument("--merge-from", type=int, default=None,
                    help="progressive merge from this many clicks on (0 off; default: the engine's)")
    ap.add_argument("--only", default=None, help="comma-separated volume names")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    engine = load_engine(args.checkpoint, device="cpu")
    if hasattr(engine, "zoom_in"):
        engine.zoom_in = args.zoom == "on"
    if args.merge_from is not None and hasattr(engine, "merge_from_click"):
        engine.merge_from_click = args.merge_from
    results, per_volume, per_label = {}, {}, defaultdict(list)
    box_pairs = []
    t0 = time.time()
    only = set(args.only.split(",")) if args.only else None
    for src in volumes("heldout"):
        if only and src.name not in only:
            continue
        root = Path(args.data_root)
        image = np.asarray(load_nifti(root / src.image).data_zyx)
        labels = np.asarray(load_nifti(root / src.labels).data_zyx).astype(np.int64)
        window = window_for(src, image)
        cases = sample_cases(labels, args.cases_per_volume, 0, args.min_area)
        if not cases:
            continue
        res = evaluate_volume(engine, image, labels, window, cases, "clicks", args.max_clicks,
                              volume_key=src.name)
        per_volume[src.name] = summarize(res, args.max_clicks, "clicks")
        for r in res:
            per_label[f"{src.name}:{r.label}"].append(r)
        results[src.name] = [r.to_dict() for r in res]
        if args.box_clicks:
            box = evaluate_volume(engine, image, labels, window, cases, "box", 1, volume_key=src.name)
            b3 = evaluate_volume(engine, image, labels, window, cases, "box+clicks", 4,
                                 volume_key=src.name)
            box_pairs += [(a.ious[0], carried(b.ious, 4)) for a, b in zip(box, b3, strict=True)]
        print(row(src.name, per_volume[src.name]), f"({time.time() - t0:.0f} s)", flush=True)
    every = [r for rs in per_label.values() for r in rs]
    overall = summarize(every, args.max_clicks, "clicks")
    curve = overall["miou_curve"]
    worse = [f"{r.label}@z{r.z}" for r in every if carried(r.ious, 5) < carried(r.ious, 1) - 1e-9]
    checks = {
        "dice_at_1": overall["dice_at"]["1"],
        "noc85": overall["noc85"],
        "noc90": overall["noc90"],
        "curve_never_falls_to_10": all(b >= a - 1e-9 for a, b in zip(curve[:10], curve[1:10])),
        "cases_worse_at_5_than_1": len(worse),
    }
    if box_pairs:
        checks["box_iou"] = float(np.mean([a for a, _ in box_pairs]))
        checks["box_plus_3_clicks_iou"] = float(np.mean([b for _, b in box_pairs]))
    print("\n| volume | cases | NoC@85 | NoC@90 | Dice@1 | Dice@3 | Dice@5 | mIoU@10 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, summary in per_volume.items():
        print(row(name, summary))
    print(row("**all**", overall))
    print("\n| volume:label | cases | NoC@85 | NoC@90 | Dice@1 | Dice@3 | Dice@5 | mIoU@10 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, rs in sorted(per_label.items()):
        print(row(name, summarize(rs, args.max_clicks, "clicks")))
    print("\nmean IoU curve:", " ".join(f"{v:.3f}" for v in curve[:10]))
    print(json.dumps(checks, indent=1), f"\n{time.time() - t0:.0f} s, engine {engine.name}")
    if args.json:
        report = {"checks": checks, "overall": overall, "per_volume": per_volume, "cases": results}
        atomic_write_text(args.json, json.dumps(report))


if __name__ == "__main__":
    main()
