"""Sweep propagation's stop rules and mask prompt on thick and thin labelled scans.

For each object of each case (``propagation_cases.py``: a 5 mm lung CT, 6.5 mm
brain MR, 7.5 mm spinal-cord MR, two 3.3 mm sarcoma CTs, five organs of a 3 mm
abdominal CT), a loose box (``napari_medsam.evaluation.boxes.loose_box``,
seeded) on the object's largest slice is segmented, and from that seed
:func:`napari_medsam.tasks.propagate.propagate` runs up and down with no stop
rule but an empty mask, once per ``--modes`` (how the previous mask reaches the
model: ``none`` = box only, ``logits``, ``binary``). Each slice's predicted IoU,
overlap with the previous slice, area and intersection with the truth are
recorded. A slice depends only on the slices before and a stop only on them,
so a run with any stop rule is the recorded chain cut at its first stopping
slice: every rule (:class:`napari_medsam.tasks.stop_rules.StopRule`, fixed or
fitted to spacing / object size / seed score) is replayed offline and scored
by the 3D Dice of seed + kept slices. Chains are cut ``--cap`` slices beyond
the truth's extent (a lax rule may paint more in a real run).

``--replay OUT.json`` re-scores a saved run (new rules, no model).

Usage::

    python -u benchmarks/sweep_propagation.py --json sweep.json > sweep.txt 2>&1
    python -u benchmarks/sweep_propagation.py --replay sweep.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from propagation_cases import (  # noqa: E402
    THICK_MM, add_sweep_args, loaded_cases, object_window_for, sweep_engine,
)  # fmt: skip

from napari_medsam.io.atomic import atomic_write_text  # noqa: E402
from napari_medsam.evaluation.boxes import loose_box, loose_box_settings  # noqa: E402
from napari_medsam.prompts.geometry import box_from_mask  # noqa: E402
from napari_medsam.tasks.propagate import DEFAULT_BOX_MARGIN, mask_iou, propagate  # noqa: E402
from napari_medsam.tasks.propagate_options import PropagationOptions  # noqa: E402
from napari_medsam.tasks.segment import embed_slice, predict_slice  # noqa: E402
from napari_medsam.tasks.stop_rules import DEFAULT_STOP_RULE, FIXED_STOP_RULE, StopRule  # noqa: E402
from napari_medsam.types import SliceMask, SlicePrompt  # noqa: E402

SCORES = (None, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)
RATIOS = (0.8, 0.85, 0.9, 0.95)
OVERLAPS = (None, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
SLOPES = ((0.6, 0.3, 0.2), (0.6, 0.5, 0.2), (0.7, 0.5, 0.2), (0.7, 0.7, 0.1), (0.6, 0.7, 0.1),
          (0.8, 0.8, 0.2), (0.7, 0.3, 0.3))  # (base, slope, min) fmt: skip


def candidate_rules() -> list[StopRule]:
    """Every replayed rule: absolute or seed-relative score x flat or spacing-scaled overlap."""
    scores = [dict(stop_score=-math.inf if s is None else s) for s in SCORES]
    scores += [dict(stop_score=0.5, score_ratio=r) for r in RATIOS]
    overlaps = [dict(stop_overlap=0.0 if o is None else o) for o in OVERLAPS]
    overlaps += [dict(stop_overlap=b, overlap_slope=k, overlap_min=m) for b, k, m in SLOPES]
    return [StopRule(**s, **o) for s, o in itertools.product(scores, overlaps)]


def rule_text(rule: StopRule) -> str:
    s = f"score>={rule.score_ratio:g}*seed" if rule.score_ratio else (
        "score off" if rule.stop_score == -math.inf else f"score>={rule.stop_score:g}")
    if rule.overlap_slope:
        o = f"ovl>={rule.stop_overlap:g}-{rule.overlap_slope:g}*dz/r (>={rule.overlap_min:g})"
    else:
        o = "ovl off" if rule.stop_overlap == 0 else f"ovl>={rule.stop_overlap:g}"
    return f"{s}, {o}"  # fmt: skip


def record_object(engine, image_zyx, window, gt, spacing, box, modes, cap, key_prefix, label):
    """Seed from ``box`` (on the largest slice), then one unstopped chain per mask mode
    (slice statistics only)."""
    areas = gt.sum(axis=(1, 2))
    z0 = int(np.argmax(areas))
    zs = np.flatnonzero(areas)
    embedded = embed_slice(engine, image_zyx, window, z0, key_prefix)
    seed = predict_slice(engine, embedded, SlicePrompt(box_yxyx=box), label)
    seed_mask = seed.mask_yx
    lo, hi = int(zs[0]) - cap - 1, int(zs[-1]) + cap + 1  # locked without a mask: ends there
    out = {
        "label": label, "z0": z0, "box": [float(v) for v in box],
        "truth_box": [float(v) for v in box_from_mask(gt[z0])],
        "seed_area": int(seed_mask.sum()), "seed_score": float(seed.score),
        "seed_inter": int((seed_mask & gt[z0]).sum()), "truth_voxels": int(gt.sum()),
        "truth_slices": [int(zs[0]), int(zs[-1])], "spacing": [float(v) for v in spacing],
        "window": [float(window.lo), float(window.hi)], "chains": {},
    }  # fmt: skip
    if not seed_mask.any():
        return out
    for mode in modes:
        options = PropagationOptions(
            locked_zs={lo, hi}, locked_masks={}, stop_score=-math.inf, stop_overlap=0.0,
            min_area=1, box_margin=DEFAULT_BOX_MARGIN, mask_prompt=mode,
            start_logits_lowres=seed.logits_lowres,
        )  # fmt: skip
        items = propagate(engine, image_zyx, window, z0, seed_mask, label, key_prefix, options)
        masks = [m for m in items if isinstance(m, SliceMask)]
        chains = []
        for side in (lambda z: z > z0, lambda z: z < z0):
            chain, prev = [], seed_mask
            for m in (m for m in masks if side(m.z)):
                chain.append({
                    "z": m.z, "area": int(m.mask_yx.sum()), "score": float(m.score),
                    "overlap": mask_iou(m.mask_yx, prev), "inter": int((m.mask_yx & gt[m.z]).sum()),
                })  # fmt: skip
                prev = m.mask_yx
            chains.append(chain)
        out["chains"][mode] = chains
    return out


def replay(obj: dict, mode: str, rule: StopRule) -> tuple[float, int]:
    """(3D Dice, slices painted incl. the seed) of a run with ``rule``."""
    if not obj["chains"]:
        return 0.0, 0
    seed_yx = np.ones(obj["seed_area"], bool)  # only the area matters for the radius
    spacing = obj["spacing"]
    limits = rule.fit(spacing, seed_yx, obj["seed_score"])
    inter, area, n = obj["seed_inter"], obj["seed_area"], 1
    for chain in obj["chains"][mode]:
        for r in chain:
            if limits.reason(r["area"], r["score"], r["overlap"]) is not None:
                break
            inter, area, n = inter + r["inter"], area + r["area"], n + 1
    return 2.0 * inter / (area + obj["truth_voxels"]), n


def score_table(records: list[dict], modes, rules) -> dict:
    """{(mode, rule index): {case: mean Dice}} plus the group means."""
    table = {}
    for mode, (i, rule) in itertools.product(modes, enumerate(rules)):
        per_case = {}
        for rec in records:
            d = [replay(o, mode, rule)[0] for o in rec["objects"]]
            per_case[rec["case"]] = float(np.mean(d))
        table[(mode, i)] = per_case
    return table


def group_means(per_case: dict, records: list[dict]) -> tuple[float, float, float]:
    thick = [per_case[r["case"]] for r in records if r["spacing_z"] >= THICK_MM]
    thin = [per_case[r["case"]] for r in records if r["spacing_z"] < THICK_MM]
    t1 = float(np.mean(thick)) if thick else float("nan")
    t2 = float(np.mean(thin)) if thin else float("nan")
    return t1, t2, float(np.nanmean([t1, t2]))


#: The seed-relative rule measured beside the fixed one: score >= 0.85 x the seed's, overlap 0.6.
RELATIVE_STOP_RULE = StopRule(stop_score=0.5, stop_overlap=0.6, score_ratio=0.85)


def print_report(records: list[dict], modes) -> None:
    rules = candidate_rules() + [FIXED_STOP_RULE, DEFAULT_STOP_RULE, RELATIVE_STOP_RULE]
    table = score_table(records, modes, rules)
    ranked = sorted(table, key=lambda k: -group_means(table[k], records)[2])
    print("\nbest 12 (mode, rule): thick / thin / mean of the two")
    for k in ranked[:12]:
        t1, t2, m = group_means(table[k], records)
        print(f"  {k[0]:7s} {rule_text(rules[k[1]]):48s} {t1:.3f} {t2:.3f} {m:.3f}")
    fixed, default, relative = len(rules) - 3, len(rules) - 2, len(rules) - 1
    best = ranked[0]
    rows = [(f"{m} / fixed 0.85, 0.6", (m, fixed)) for m in modes]
    rows += [(f"{m} / 0.85 x seed, 0.6", (m, relative)) for m in modes]
    rows += [(f"{m} / DEFAULT_STOP_RULE", (m, default)) for m in modes]
    rows += [(f"{m} / best for mode", max((k for k in table if k[0] == m),
              key=lambda k: group_means(table[k], records)[2])) for m in modes]  # fmt: skip
    names = [r["case"] for r in records]
    print("\nmean 3D Dice per case (objects averaged within a case), slice thickness in the header")
    print(f"{'setting':34s}" + "".join(f"{n[:10]:>11s}" for n in names) + "   thick   thin   mean")
    print(f"{'':34s}" + "".join(f"{r['spacing_z']:>8.2f} mm" for r in records))
    for text, k in rows:
        t1, t2, m = group_means(table[k], records)
        cells = "".join(f"{table[k][n]:11.3f}" for n in names)
        print(f"{text:34s}{cells}  {t1:.3f}  {t2:.3f}  {m:.3f}   [{rule_text(rules[k[1]])}]")
    print("\nper object: 3D Dice (slices painted / truth slices) per mode, fixed | 0.85 x seed rule")
    for rec in records:
        for o in rec["objects"]:
            t = o["truth_slices"][1] - o["truth_slices"][0] + 1
            cells = []
            for m in modes:
                (d0, n0), (d1, n1) = replay(o, m, rules[fixed]), replay(o, m, rules[relative])
                cells.append(f"{m} {d0:.3f} ({n0}/{t}) | {d1:.3f} ({n1}/{t})")
            print(f"  {rec['case']:22s} {rec['spacing_z']:.2f} mm label {o['label']:3d}: seed score "
                  f"{o['seed_score']:.2f}; " + "; ".join(cells))  # fmt: skip
    print(f"\nbest: {best[0]} / {rule_text(rules[best[1]])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_args(parser)
    parser.add_argument("--modes", default="none,logits,binary", help="mask prompts to record")
    parser.add_argument("--cap", type=int, default=3, help="slices recorded beyond the truth")
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--replay", default=None, metavar="JSON[,JSON...]",
                        help="re-score saved runs")  # fmt: skip
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.replay:  # several files (comma-separated) are merged: the modes all have in common
        saved = [json.loads(Path(p).read_text()) for p in args.replay.split(",")]
        common = [m for m in saved[0]["modes"] if all(m in s["modes"] for s in saved)]
        print_report([r for s in saved for r in s["records"]], common)
        return 0
    engine = sweep_engine(args)
    print(f"sweep_propagation: {engine.name} on {args.device}, boxes {loose_box_settings(args.seed)}")
    records = []
    cases = loaded_cases(args.cases, args.data_root, args.window_mode)
    for case, _, image_zyx, labels_zyx, display, window_text, spacing in cases:
        print(f"{case.name}: {image_zyx.shape}, spacing {spacing} mm, {window_text}", flush=True)
        objects = []
        for label in case.label_ids:
            gt = labels_zyx == label
            if not gt.any():
                continue
            t0 = time.perf_counter()
            rng = np.random.default_rng([args.seed, zlib.crc32(case.name.encode()), label])
            z0 = int(np.argmax(gt.sum(axis=(1, 2))))
            box = loose_box(gt[z0], rng)
            window = object_window_for(args.window_mode, display, image_zyx, z0, box)
            obj = record_object(engine, image_zyx, window, gt, spacing, box, modes, args.cap,
                                ("sweep", case.scan), label)  # fmt: skip
            objects.append(obj)
            print(f"  label {label}: seed z {obj['z0']} score {obj['seed_score']:.2f}, window "
                  f"[{window.lo:g}, {window.hi:g}], {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        records.append({"case": case.name, "spacing_z": spacing[0], "objects": objects})
        if args.json_path:  # after every case: a long run that is stopped keeps what it did
            out = {"engine": engine.name, "checkpoint": args.checkpoint, "modes": modes,
                   "window_mode": args.window_mode,
                   "boxes": loose_box_settings(args.seed), "cap": args.cap, "records": records}  # fmt: skip
            atomic_write_text(args.json_path, json.dumps(out))
            print(f"wrote {args.json_path}", flush=True)
    print_report(records, modes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
