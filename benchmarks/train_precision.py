"""Decoder-only fine-tuning on the phantom in fp32 and under CPU bf16 autocast: speed and loss.

    PYTHONPATH=$PWD python benchmarks/train_precision.py --steps 40 --threads 2

Both runs use the same seed, data, prompts and cached embeddings (LiteMedSAM
encoder on the fast backend); only the autocast of the training steps differs.
Prints seconds per step and the loss curve of each (means over blocks of 5
steps), and the held-out NoC / Dice after training, so one can see whether
bf16 changes what is learnt.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch


def _run(precision: str, steps: int, batch: int, out_dir: Path, volumes) -> dict:
    from napari_medsam.training.config import FinetuneConfig
    from napari_medsam.training.loop import finetune

    config = FinetuneConfig(
        data=(("phantom", "phantom"),),
        out=str(out_dir / f"medsa_{precision}.pt"),
        backbone="litemedsam",
        steps=steps,
        batch_size=batch,
        device="cpu",
        parts="decoder",
        precision=precision,
        val_cases=8,
        val_max_clicks=5,
        eval_before=False,
        seed=0,
    )
    history = finetune(config, volumes=volumes, progress=False)
    epochs = history["epochs"]
    seconds = sum(e["seconds"] for e in epochs)
    return {
        "precision": precision,
        "cpu_bf16_steps": history.get("cpu_bf16_steps"),
        "s_per_step": seconds / max(1, steps),
        "loss": history["loss"],
        "val_last": epochs[-1]["val"] if epochs else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from napari_medsam.io.phantom import make_phantom
    from napari_medsam.training.data import make_volume

    ph = make_phantom((16, 128, 128), (4.0, 2.0, 2.0), seed=0)
    volumes = [make_volume("phantom", ph.image_zyx, ph.labels_zyx, ph.spacing_zyx_mm)]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            runs.append(_run(precision, args.steps, args.batch, Path(tmp), volumes))
    block = 5
    print("| steps | " + " | ".join(f"loss {r['precision']}" for r in runs) + " |")
    print("| --- |" + " --- |" * len(runs))
    for start in range(0, args.steps, block):
        cells = [f"{np.mean(r['loss'][start : start + block]):.4f}" for r in runs]
        print(f"| {start + 1}-{min(start + block, args.steps)} | " + " | ".join(cells) + " |")
    for r in runs:
        val = r["val_last"] or {}
        print(
            f"{r['precision']}: {r['s_per_step']:.2f} s/step (bf16 autocast: {r['cpu_bf16_steps']}), "
            f"held-out NoC90 {val.get('noc90')}, Dice@1 {val.get('dice1')}"
        )
    if args.json_path:
        from napari_medsam.io.atomic import atomic_write_text

        atomic_write_text(args.json_path, json.dumps(runs, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
