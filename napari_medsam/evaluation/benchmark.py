"""Latency and memory measurements of an engine (no Qt): the core of ``napari-medsam bench``.

Every figure is the median of ``repeats`` timed runs after ``warmup`` untimed
ones, reported with its min and max, in milliseconds.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from napari_medsam.types import SlicePrompt


@dataclass(frozen=True)
class Stat:
    """Summary of repeated timings in milliseconds (per slice or per click as named)."""

    median: float
    min: float
    max: float
    runs: int

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> Stat:
        if not len(values_ms):
            raise ValueError("no timing to summarise")
        v = np.asarray(values_ms, np.float64)
        return cls(float(np.median(v)), float(v.min()), float(v.max()), int(v.size))

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.median:9.1f}  (min {self.min:.1f}, max {self.max:.1f}, n={self.runs})"


def time_runs(fn: Callable[[int], object], repeats: int, warmup: int = 1) -> list[float]:
    """Call ``fn(run_index)`` ``warmup`` times untimed, then ``repeats`` times; return ms per call.

    Run indices are distinct across warm-up and timed runs, so ``fn`` can make
    fresh cache keys from them.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    for i in range(warmup):
        fn(-1 - i)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def _sync(engine) -> None:
    """Wait for queued GPU work so wall time covers it."""
    device = getattr(engine, "device", None)
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        import torch

        torch.cuda.synchronize(device)


def bench_embedding(
    engine, images_yx: Sequence[np.ndarray], batch: int, repeats: int = 5, warmup: int = 1
) -> tuple[Stat, Stat | None]:
    """Image-encoder time per slice at batch 1 and batched.

    Parameters
    ----------
    engine : Engine
        ``embed`` (batch 1, no cache) and optionally ``embed_batch``.
    images_yx : sequence of np.ndarray
        (H, W) float32 slices in [0, 1]; at least ``batch`` of them.
    batch : int
        Slices per batched encoder call.

    Returns
    -------
    (Stat, Stat or None)
        ms per slice at batch 1, and batched (None without ``embed_batch``).
    """

    def one(i: int) -> None:
        engine.embed(images_yx[i % len(images_yx)], cache_key=None)
        _sync(engine)

    single = Stat.of(time_runs(one, repeats, warmup))
    if not hasattr(engine, "embed_batch") or batch < 2:
        return single, None
    chunk = [images_yx[i % len(images_yx)] for i in range(batch)]

    def batched(i: int) -> None:
        keys = [("bench-batch", i, j) for j in range(batch)]  # fresh keys: never a cache hit
        engine.embed_batch(chunk, keys, batch_size=batch)
        _sync(engine)
        clear = getattr(engine, "clear_cache", None)
        if clear is not None:
            clear()

    per_slice = [t / batch for t in time_runs(batched, repeats, warmup)]
    return single, Stat.of(per_slice)


def bench_decoder(
    engine, image_yx: np.ndarray, prompts: Sequence[SlicePrompt], repeats: int = 10, warmup: int = 2
) -> Stat:
    """Prompt encoder + mask decoder time per click on a cached embedding.

    The slice is embedded first under a fixed cache key; each timed call runs
    ``engine.predict`` with the next prompt of ``prompts`` (cycled).
    """
    key = ("bench-decoder", image_yx.shape)
    engine.embed(image_yx, cache_key=key)

    def click(i: int) -> None:
        engine.predict(image_yx, prompts[i % len(prompts)], cache_key=key)
        _sync(engine)

    return Stat.of(time_runs(click, repeats, warmup))


def click_prompts(gt_yx: np.ndarray, n: int = 5, lowres_side: int = 256) -> list[SlicePrompt]:
    """Realistic prompts on one object: 1..n positive clicks at the simulator's positions.

    Later prompts carry previous low-res logits ((lowres_side, lowres_side) zeros),
    like a user's later clicks.
    """
    from napari_medsam.evaluation.clicker import Clicker

    clicker = Clicker(gt_yx)
    empty = np.zeros(gt_yx.shape, bool)
    prompts = []
    for k in range(n):
        if clicker.make_next_click(empty) is None:
            break
        prev = None if k == 0 else np.zeros((lowres_side, lowres_side), np.float32)
        prompts.append(
            SlicePrompt(clicker.points_yx, clicker.point_labels, prev_logits_lowres=prev)
        )
    return prompts


def peak_memory(engine=None) -> dict:
    """Peak resident memory of this process (MiB) and, on CUDA, torch's max allocated (MiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_rss_mib = rss / 1024.0 if sys.platform != "darwin" else rss / 2**20  # KiB on Linux
    out: dict = {"peak_rss_mib": round(peak_rss_mib, 1), "cuda_max_allocated_mib": None}
    device = getattr(engine, "device", None)
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        import torch

        out["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out
