"""Quick held-out click curve of click checkpoints, with SAM's multimask first click on and off.

The same RITM cases the trainer's quick check uses (a held-out embedding store,
model frame, no zoom-in), so checkpoints and averages of one run compare on equal
terms in a minute, before the full ``eval_clicks_heldout.py`` run::

    python benchmarks/click_val_curve.py --heldout-store HELD ckpt_a.pt ckpt_b.pt

Prints one row per checkpoint and setting: mean IoU after clicks 1..K, NoC@85, NoC@90
(capped at K).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from types import SimpleNamespace

import torch

from napari_medsam.io.atomic import atomic_write_text
from napari_medsam.model.checkpoints import read_state_dict
from napari_medsam.model.click.checkpoint import click_decoder_from
from napari_medsam.model.engine import load_engine
from napari_medsam.training.clicks import validate
from napari_medsam.training.clicks.store import SliceStore


def curve_rows(paths, held: SliceStore, cases: int, clicks: int) -> list[dict]:
    """One row per (checkpoint, multimask setting): IoU curve and NoC figures."""
    backbone = load_engine("litemedsam", device="cpu").model
    chosen = validate.heldout_cases(held, n=cases)
    rows = []
    for path in paths:
        decoder = click_decoder_from(read_state_dict(path), backbone)
        for multimask in (False, True):
            decoder.config = dataclasses.replace(decoder.config, first_click_multimask=multimask)
            runner = SimpleNamespace(
                decoder=decoder,
                _autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16),
            )
            ious = validate.click_ious(runner, held, chosen, clicks=clicks)
            rows.append({
                "checkpoint": str(path), "multimask": multimask,
                "iou": [round(float(v), 3) for v in ious.mean(0)],
                "noc85": round(validate.noc(ious, 0.85), 2),
                "noc90": round(validate.noc(ious, 0.90), 2),
            })
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--heldout-store", required=True)
    parser.add_argument("--cases", type=int, default=96)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    rows = curve_rows(args.checkpoints, SliceStore(args.heldout_store), args.cases, args.clicks)
    for row in rows:
        print(f"{row['checkpoint']}  multimask={'on ' if row['multimask'] else 'off'}  "
              f"IoU {' '.join(f'{v:.3f}' for v in row['iou'])}  "
              f"NoC@85 {row['noc85']:.2f}  NoC@90 {row['noc90']:.2f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
