"""Where one click's milliseconds go on a cached slice: the engine's stages, timed apart.

The default click engine on the bench's 512 x 512 phantom slice, embedding cached,
a prompt of N clicks plus the previous logits. Each stage is run as the engine runs
it (torch on 1 thread around a ready OpenVINO decoder), in turn, ``--repeats`` times;
the medians (wall ms) are printed for N = 3 and N = 400 (the "400th click").
The GUI side (napari's Points.add, the paint) is in ``profile_click.py``.

    PYTHONPATH=$PWD python benchmarks/click_stages.py [--repeats 25] [--backend openvino]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
import torch
from torch import nn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--backend", default="openvino")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from napari_medsam._cli.bench import _test_volume
    from napari_medsam.model.click.decoder import disk_maps
    from napari_medsam.model.engine import load_engine
    from napari_medsam.model.prompt_inputs import prompt_tensors
    from napari_medsam.prompts.lowres_mask import lowres_logits_to_mask
    from napari_medsam.types import SlicePrompt

    engine = load_engine(None, device="cpu", backend=args.backend, background=False)
    phantom, window = _test_volume(8)
    image = window.apply(phantom.image_zyx[4]).astype(np.float32)
    ys, xs = np.nonzero(phantom.labels_zyx[4] > 0)
    engine.embed(image, "s")
    embedding = engine._embedding(image, "s")
    decoder, backend = engine.click_decoder, engine.click_decoder_backend
    if hasattr(backend, "prepare"):
        backend.prepare()
    side, hw = engine.image_size, image.shape
    first = engine.predict(image, SlicePrompt(np.array([[ys[0], xs[0]]], np.float32), np.ones(1)), "s")
    print(f"{engine.name}: click decoder {engine.click_backend}, {args.threads} threads")
    for n in (3, 400):
        k = np.random.default_rng(n).integers(0, len(ys), n)
        prompt = SlicePrompt(np.stack([ys[k], xs[k]], 1).astype(np.float32), np.ones(n, np.int64),
                             prev_logits_lowres=first.logits_lowres)  # fmt: skip
        times: dict[str, list[float]] = {}

        def timed(name, fn):
            t0 = time.perf_counter()
            out = fn()
            times.setdefault(name, []).append(1000 * (time.perf_counter() - t0))
            return out

        for _ in range(args.repeats):
            small = engine._torch_threads_around_fast_decoder
            with torch.inference_mode():
                p, b, m, _ = timed("prompt -> tensors", lambda: prompt_tensors(
                    prompt, hw, side, "cpu", engine.spec.resize, engine.lowres_side, False))  # fmt: skip
                with small() if callable(small) else contextlib.nullcontext():
                    sparse, dense = timed("prompt encoder (torch)",
                                          lambda: decoder.prompt_encoder(points=p, boxes=b, masks=m))  # fmt: skip

                    def stem():
                        maps = disk_maps(p[0], p[1], side)
                        prev = nn.functional.interpolate(m, size=(side, side), mode="bilinear",
                                                         align_corners=False)  # fmt: skip
                        return decoder.click_stem(torch.cat([maps, (prev > 0).float()], 1))

                    dense = dense + timed("disk maps + stem (torch)", stem)
                    pe = timed("dense PE (cached)", decoder.dense_pe)
                    lowres, _ = timed("mask decoder", lambda: backend(
                        image_embeddings=embedding, image_pe=pe, sparse_prompt_embeddings=sparse,
                        dense_prompt_embeddings=dense, multimask_output=False))  # fmt: skip
            logits = lowres[0, 0].float().numpy().copy()
            timed("postprocess (mask at 512 x 512)",
                  lambda: lowres_logits_to_mask(logits, hw, side, engine.spec.resize))  # fmt: skip
            timed("engine.predict, all of it", lambda: engine.predict(image, prompt, "s"))
        print(f"\n{n} clicks + previous logits, median of {args.repeats} (ms):")
        for name, values in times.items():
            print(f"  {name:34s} {statistics.median(values):8.2f}  (min {min(values):.2f})")


if __name__ == "__main__":
    main()
