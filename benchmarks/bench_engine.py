"""Sweep the image-encoder batch size and the decoder prompt kind for one engine.

``napari-medsam bench`` reports one batch size; this script shows where
batching stops paying off on a device. No Qt is needed.

Usage::

    python benchmarks/bench_engine.py --device cuda --batches 1,2,4,8,16 --json sweep.json
"""

from __future__ import annotations

import argparse
import json
import sys

from napari_medsam._cli.bench import _load_engine, _test_volume
from napari_medsam._cli._common import set_threads
from napari_medsam.evaluation.benchmark import (
    bench_decoder,
    bench_embedding,
    click_prompts,
    peak_memory,
)
from napari_medsam.io.atomic import atomic_write_text
from napari_medsam.prompts.geometry import box_from_mask
from napari_medsam.types import SlicePrompt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--batches", default="1,2,4,8", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    engine = _load_engine(args.checkpoint, args.device)
    phantom, window = _test_volume()
    images = [window.apply(s) for s in phantom.image_zyx]
    rows: dict[str, dict] = {}
    for batch in (int(b) for b in args.batches.split(",")):
        single, batched = bench_embedding(engine, images, batch, repeats=args.repeats)
        stat = single if batched is None else batched
        rows[f"embed_ms_per_slice_batch{batch}"] = stat.to_dict()
        print(f"embed batch {batch:3d}: {stat} ms/slice", flush=True)
    z = len(images) // 2
    gt = phantom.labels_zyx[z] == 1
    side = getattr(engine, "lowres_side", 256)
    for name, prompts in (
        ("1 click", click_prompts(gt, 1, side)),
        ("1..5 clicks + prev logits", click_prompts(gt, 5, side)[1:]),
        ("box", [SlicePrompt(box_yxyx=box_from_mask(gt))]),
    ):
        stat = bench_decoder(engine, images[z], prompts, repeats=args.repeats)
        rows[f"decoder_ms_{name}"] = stat.to_dict()
        print(f"decoder {name:>26}: {stat} ms", flush=True)
    rows.update(peak_memory(engine))
    print(peak_memory(engine))
    if args.json_path:
        report = {"engine": engine.name, "device": str(args.device), "figures": rows}
        atomic_write_text(args.json_path, json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
