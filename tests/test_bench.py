"""``napari-medsam bench`` produces its figures (smoke tests with a numpy engine; nothing is timed)."""

import json
import math

import numpy as np
import pytest

from napari_medsam import cli
from napari_medsam._cli import bench as bench_cli
from napari_medsam.evaluation.benchmark import (
    Stat,
    bench_decoder,
    bench_embedding,
    click_prompts,
    peak_memory,
    time_runs,
)
from oracle_engines import EmptyEngine
from napari_medsam.io.phantom import make_phantom
from napari_medsam.prompts.intensity import auto_window


class CountingEngine(EmptyEngine):
    """EmptyEngine that also records batch calls and cache clears."""

    def __init__(self):
        super().__init__()
        self.batches = []
        self.clears = 0

    def embed_batch(self, images_yx, cache_keys, batch_size=4):
        self.batches.append(list(cache_keys))
        super().embed_batch(images_yx, cache_keys)

    def clear_cache(self):
        self.clears += 1


def is_stat(d):
    return (
        set(d) == {"median", "min", "max", "runs"}
        and d["min"] <= d["median"] <= d["max"]
        and all(math.isfinite(d[k]) and d[k] >= 0 for k in ("median", "min", "max"))
    )


def test_stat_and_time_runs():
    s = Stat.of([3.0, 1.0, 2.0])
    assert (s.median, s.min, s.max, s.runs) == (2.0, 1.0, 3.0, 3)
    with pytest.raises(ValueError):
        Stat.of([])
    calls = []
    times = time_runs(calls.append, repeats=3, warmup=2)
    assert calls == [-1, -2, 0, 1, 2]  # warm-up runs first, distinct indices
    assert len(times) == 3


def test_engine_benchmarks_call_the_engine_as_documented():
    engine = CountingEngine()
    images = [np.zeros((16, 16), np.float32)] * 3
    single, batched = bench_embedding(engine, images, batch=4, repeats=2, warmup=1)
    assert single.runs == 2 and batched.runs == 2
    assert len(engine.batches) == 3  # warm-up + 2 timed
    assert all(len(set(keys)) == 4 for keys in engine.batches)
    assert len({k for keys in engine.batches for k in keys}) == 12  # never a cache hit
    gt = np.zeros((16, 16), bool)
    gt[4:12, 4:12] = True
    prompts = click_prompts(gt, n=3)
    assert [len(p.points_yx) for p in prompts] == [1, 2, 3]
    assert prompts[0].prev_logits_lowres is None and prompts[1].prev_logits_lowres.shape == (
        256,
        256,
    )
    before = engine.predict_calls
    stat = bench_decoder(engine, images[0], prompts, repeats=4, warmup=1)
    assert stat.runs == 4 and engine.predict_calls - before == 5
    mem = peak_memory(engine)
    assert mem["peak_rss_mib"] > 0 and mem["cuda_max_allocated_mib"] is None


@pytest.fixture
def small_volume(monkeypatch):
    phantom = make_phantom(shape_zyx=(8, 48, 48))
    monkeypatch.setattr(
        bench_cli, "_test_volume", lambda *_: (phantom, auto_window(phantom.image_zyx))
    )
    return phantom


def test_bench_cli_without_gui_writes_json(small_volume, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_cli, "_load_engine", lambda checkpoint, device, **_: CountingEngine())
    out = tmp_path / "bench.json"
    argv = ["bench", "--device", "cpu", "--repeats", "2", "--batch", "2", "--no-gui"]
    assert cli.main(argv + ["--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "embed_ms_per_slice_batch1" in text and "GUI figures skipped" in text
    report = json.loads(out.read_text())
    assert report["schema"] == "napari-medsam-bench/1"
    figures = report["figures"]
    for key in ("embed_ms_per_slice_batch1", "embed_ms_per_slice_batch2", "decoder_ms_per_click"):
        assert is_stat(figures[key]), key
    assert figures["embed_ms_per_slice_batch1"]["runs"] == 2
    assert figures["peak_rss_mib"] > 0
    assert report["settings"]["engine"] == "empty" and report["gui"] == "skipped (--no-gui)"


def test_gui_bench_in_a_real_viewer_with_the_widget(small_volume, make_napari_viewer):
    viewer = make_napari_viewer()
    engine = CountingEngine()
    window = auto_window(small_volume.image_zyx)
    figures = bench_cli.gui_benchmarks(
        engine,
        small_volume,
        window,
        repeats=2,
        stall_runs=1,
        timeout_s=60,
        viewer=viewer,
        many_clicks=12,
    )
    assert is_stat(figures["click_to_paint_ms_cached"])
    assert figures["click_to_paint_ms_cached"]["runs"] == 2
    assert is_stat(figures["click_to_paint_ms_new_slice"])
    assert is_stat(figures["gui_max_stall_ms_during_20_slice_embedding"])
    assert is_stat(figures["click_to_paint_ms_next_slice_prefetched"])
    assert figures["click_to_paint_ms_next_slice_prefetched"]["runs"] == 3
    assert is_stat(figures["click_to_paint_ms_first_10_clicks"])
    assert is_stat(figures["click_to_paint_ms_last_10_clicks"])
    assert figures["clicks_on_one_slice"] == 12
    # the clicks went through the widget to the engine: warm-up + 2 cached + 2 fresh
    # slices + 3 x (a click, then one on the prefetched next slice) + 12 on one slice
    assert engine.predict_calls == 5 + 6 + 12
    assert engine.embed_calls >= 8  # the stall job embedded every slice of the small volume


def test_process_until_sleeps_between_events(qapp):
    """The bench's wait leaves the CPU to the worker (a busy loop took a core of 2)."""
    import time

    from qtpy.QtCore import QTimer

    done = []
    QTimer.singleShot(300, lambda: done.append(True))
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    bench_cli._process_until(qapp, lambda: bool(done), timeout_s=10)
    wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
    assert done and wall >= 0.29
    assert cpu < 0.25 * wall, f"{1000 * cpu:.0f} ms CPU in {1000 * wall:.0f} ms of waiting"


def test_process_until_times_out(qapp):
    with pytest.raises(TimeoutError):
        bench_cli._process_until(qapp, lambda: False, timeout_s=0.05)
