"""Click latency of the default click engine on a real CT slice (2 CPU threads).

Three figures, median over repeats, each the engine's ``predict`` on a 512 x 512
slice (the app adds painting on top, measured by ``napari-medsam bench``):

- ``cached_full``: a click on a large organ, slice embedding cached (no zoom);
- ``cached_crop``: a correction on a small object whose zoom crop is cached;
- ``new_crop``: a correction that needs a new crop embedding.

    python benchmarks/click_latency.py --data-root ../shared/data [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from napari_medsam.io.nifti import load_nifti
from napari_medsam.model.engine import load_engine
from napari_medsam.prompts.intensity import IntensityWindow
from napari_medsam.types import SlicePrompt


def _timed(fn, repeats: int, before=None) -> float:
    """Median ms of ``fn()`` over ``repeats``; ``before()`` runs untimed ahead of each."""
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.data_root) / "totalseg_extra" / "ct_dicom20"
    image = load_nifti(root / "image.nii.gz").data_zyx
    labels = np.asarray(load_nifti(root / "label.nii.gz").data_zyx)
    z = image.shape[0] // 2
    slice_yx = IntensityWindow.from_level_width(40, 400).apply(image[z])
    engine = load_engine(None, device="cpu")
    engine.warm_up()  # as the app before "ready": no conversion left in the figures
    engine.zoom_in = True  # the crop figures (the default; a big organ does not zoom)
    ids, counts = np.unique(labels[z][labels[z] > 0], return_counts=True)
    big, small = int(ids[np.argmax(counts)]), int(ids[np.argmin(counts)])

    def centre(label):
        rows, cols = np.nonzero(labels[z] == label)
        k = len(rows) // 2
        return np.array([[rows[k], cols[k]]], np.float32)

    one = np.array([1])
    engine.embed(slice_yx, "s")
    first = engine.predict(slice_yx, SlicePrompt(points_yx=centre(big), point_labels=one), "s")
    big_prompt = SlicePrompt(points_yx=centre(big), point_labels=one, prev_logits_lowres=first.logits_lowres)
    cached_full = _timed(lambda: engine.predict(slice_yx, big_prompt, "s"), args.repeats)
    seed = engine.predict(slice_yx, SlicePrompt(points_yx=centre(small), point_labels=one), "s")
    small_prompt = SlicePrompt(points_yx=centre(small), point_labels=one, prev_logits_lowres=seed.logits_lowres)
    engine.predict(slice_yx, small_prompt, "s")  # embeds the crop
    cached_crop = _timed(lambda: engine.predict(slice_yx, small_prompt, "s"), args.repeats)

    def only_the_slice_cached():
        engine.cache.clear()  # the crop's embedding goes; the slice's, as in the app, stays
        engine.embed(slice_yx, "s")

    new_crop = _timed(lambda: engine.predict(slice_yx, small_prompt, "s"),
                      max(3, args.repeats // 3), before=only_the_slice_cached)  # fmt: skip
    out = {"cached_full_ms": round(cached_full, 1), "cached_crop_ms": round(cached_crop, 1),
           "new_crop_ms": round(new_crop, 1), "engine": engine.name,
           "labels": {"big": big, "small": small}, "threads": args.threads}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
