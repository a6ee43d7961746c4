"""Which CPU runtime for the image encoder? torch vs ONNX Runtime vs OpenVINO, measured.

Runs the bundled LiteMedSAM image encoder (weights loaded, ``.eval()``, then
exported) on real-looking input at batch 1 and reports ms/slice and agreement
with torch fp32 (cosine similarity and max relative error of the embedding).

    PYTHONPATH=$PWD python benchmarks/encoder_runtimes.py --threads 2 --repeats 5

This is the measurement behind the choice of OpenVINO in
:mod:`napari_medsam.model.backends`; it is not a test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _timed(fn, x, repeats: int) -> tuple[float, np.ndarray]:
    out = fn(x)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(x)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times)), np.asarray(out, np.float32)


def _agreement(ref: np.ndarray, out: np.ndarray) -> str:
    a, b = ref.ravel().astype(np.float64), out.ravel().astype(np.float64)
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    rel = float(np.abs(a - b).max() / np.abs(a).max())
    return f"cosine {cos:.5f}, max rel err {rel:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip", default="", help="comma list of rows to skip (ort,ov32)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))

    from napari_medsam.io.phantom import make_phantom
    from napari_medsam.model.engine import load_engine
    from napari_medsam.model.preprocess import preprocess_slices
    from napari_medsam.prompts.intensity import auto_window

    engine = load_engine(device="cpu")
    encoder = engine.model.image_encoder.eval()
    phantom = make_phantom(shape_zyx=(8, 512, 512))
    window = auto_window(phantom.image_zyx)
    x = preprocess_slices([window.apply(phantom.image_zyx[4])], engine.spec)
    rows = []

    with torch.inference_mode():
        ms, ref = _timed(lambda t: encoder(t).numpy(), x, args.repeats)
    rows.append(("torch eager fp32", ms, "-"))

    with tempfile.TemporaryDirectory() as tmp:
        if "ort" not in skip:
            import onnxruntime as ort

            path = Path(tmp) / "enc.onnx"
            torch.onnx.export(encoder, (x,), str(path), dynamo=False, opset_version=17)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            ms, out = _timed(lambda t: sess.run(None, {name: t.numpy()})[0], x, args.repeats)
            rows.append((f"ONNX Runtime {ort.__version__} fp32", ms, _agreement(ref, out)))

        import openvino as ov

        core = ov.Core()
        model = ov.convert_model(encoder, example_input=x)
        for precision in ("f32", "bf16"):
            if precision == "f32" and "ov32" in skip:
                continue
            compiled = core.compile_model(
                model,
                "CPU",
                {
                    "INFERENCE_PRECISION_HINT": precision,
                    "INFERENCE_NUM_THREADS": args.threads,
                    "PERFORMANCE_HINT": "LATENCY",
                },
            )
            ms, out = _timed(lambda t, c=compiled: c(t.numpy())[0], x, args.repeats)
            rows.append((f"OpenVINO {ov.__version__} {precision}", ms, _agreement(ref, out)))

    print(f"| path ({args.threads} threads, batch 1) | ms/slice | agreement with torch fp32 |")
    print("| --- | --- | --- |")
    for name, ms, agree in rows:
        print(f"| {name} | {ms:.0f} | {agree} |")


if __name__ == "__main__":
    main()
