"""The click decoder's mask decoder on OpenVINO (f32, bf16) against torch eager fp32.

Converts ``ClickDecoder.mask_decoder`` (image embedding, dense PE, sparse tokens with
a dynamic token count, dense prompt -> all 4 low-res logit maps and IoUs) of the
default click engine, then times it at 3, 12 and 400 click tokens on the bench's
512 x 512 phantom slice and compares the logits with torch's (max |difference|,
Dice of ``logits > 0`` over the 4 outputs at 256 x 256). The prompt encoder and
the click-map stem stay in torch (they are small).

    PYTHONPATH=$PWD python benchmarks/decoder_openvino.py [--threads 2] [--repeats 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn


class _Core(nn.Module):
    """The mask decoder with every output (what would be converted)."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, embedding, image_pe, sparse, dense):
        return self.decoder(embedding, image_pe, sparse, dense, None)


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import openvino as ov

    from napari_medsam._cli.bench import _test_volume
    from napari_medsam.model.engine import load_engine
    from napari_medsam.model.prompt_inputs import prompt_tensors
    from napari_medsam.types import SlicePrompt

    engine = load_engine(None, device="cpu", backend="openvino", background=False)
    click = engine.click_decoder
    core = _Core(click.mask_decoder).eval()
    phantom, window = _test_volume(8)
    image = window.apply(phantom.image_zyx[4])
    ys, xs = np.nonzero(phantom.labels_zyx[4] > 0)
    engine.embed(image, "slice")
    embedding = engine.cache.get("slice", image.shape)
    image_pe = click.prompt_encoder.get_dense_pe()

    def inputs(n: int):
        k = np.random.default_rng(n).integers(0, len(ys), n)
        prompt = SlicePrompt(
            np.stack([ys[k], xs[k]], 1).astype(np.float32), np.ones(n, np.int64),
            prev_logits_lowres=np.zeros((256, 256), np.float32),
        )  # fmt: skip
        points, _, masks, _ = prompt_tensors(prompt, image.shape, 256, "cpu", engine.spec.resize)
        with torch.inference_mode():
            sparse, dense = click.prompt_encoder(points=points, boxes=None, masks=masks)
        return embedding, image_pe, sparse, dense

    t0 = time.perf_counter()
    side = ov.PartialShape([1, 256, 64, 64])
    with torch.no_grad():
        model = ov.convert_model(
            core, example_input=inputs(3),
            input=[side, side, ov.PartialShape([1, -1, 256]), side],
        )  # fmt: skip
    print(f"converted in {time.perf_counter() - t0:.1f} s")
    runtime = ov.Core()
    compiled = {
        hint: runtime.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": args.threads,
            "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
        })  # fmt: skip
        for hint in ("f32", "bf16")
    }
    print("| tokens | torch fp32 ms | runtime | ms | max abs diff | Dice (logits > 0) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n in (3, 12, 400):
        x = inputs(n)
        with torch.inference_mode():
            ref = core(*x)[0].numpy() > 0
            torch_ms = _median_ms(lambda x=x: core(*x), args.repeats)
            ref_logits = core(*x)[0].numpy()
        arrays = [a.numpy() for a in x]
        for hint, model_c in compiled.items():
            request = model_c.create_infer_request()
            out = request.infer(arrays)[0]
            ms = _median_ms(lambda r=request: r.infer(arrays), args.repeats)
            pos = out > 0
            dice = 2 * (pos & ref).sum() / max(1, pos.sum() + ref.sum())
            diff = float(np.abs(out - ref_logits).max())
            row = f"| {n} | {torch_ms:.1f} | openvino {hint} | {ms:.1f} | {diff:.3g} | {dice:.4f} |"
            print(row)


if __name__ == "__main__":
    main()
