"""``napari-medsam bench``: the latencies a user feels, and peak memory.

Engine figures come from :mod:`napari_medsam.evaluation.benchmark`; the GUI
figures run the real dock widget (added through the plugin manifest) and its
worker in a headless napari viewer:

- click -> painted labels layer: from adding a point to the clicks layer to
  the widget's slot that painted the mask having returned, on a slice whose
  embedding is cached, and on a fresh slice (embedding included);
- event-loop stall: the longest gap between ticks of a 5 ms QTimer while the
  widget's "embed nearby slices" job (20 slices) runs on the worker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from napari_medsam._cli.backend_args import add_backend_args, engine_options

WIDGET = ("napari-medsam", "MedSAM segmentation")
TICK_MS = 5


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench",
        help="latency and memory benchmarks of the model and the app",
        description="Image embedding ms/slice, decoder ms/click on a cached embedding, "
        "click-to-paint ms and the longest GUI stall in a headless viewer, and peak memory. "
        "Each figure: median of --repeats runs after a warm-up, with min and max.",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:0, mps")
    add_backend_args(parser, several=True)
    parser.add_argument(
        "--checkpoint", default=None, help="model checkpoint (default: bundled LiteMedSAM)"
    )
    parser.add_argument("--json", dest="json_path", default=None, metavar="OUT.json")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (default 5)")
    parser.add_argument("--batch", type=int, default=4, help="slices per batched encoder call")
    parser.add_argument(
        "--stall-runs", type=int, default=3, help="20-slice jobs timed for the stall"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--no-gui", action="store_true", help="skip the napari viewer figures")
    parser.add_argument("--quick", action="store_true",
                        help="a first look: 1 timed run per figure, 8 slices, 1 stall job "
                             "(the full run takes minutes on a CPU)")  # fmt: skip
    parser.add_argument("--no-propagation", action="store_true",
                        help="skip the 40-slice propagation figure")  # fmt: skip
    parser.add_argument("--many-clicks", type=int, default=400, metavar="N",
                        help="clicks on one slice for the first-vs-N-th click figure "
                             "(default 400; 0 skips it)")  # fmt: skip
    parser.set_defaults(func=run)
    return parser


def _load_engine(checkpoint: str | None, device: str, **options):
    """The app's engine loader (tests replace this function); ``options`` as in load_engine."""
    from napari_medsam.model.engine import load_engine

    return load_engine(checkpoint=checkpoint, device=device, **options)


def _test_volume(slices: int = 24):
    """A 512 x 512 synthetic CT (the usual CT slice size), 24 slices, and its window."""
    from napari_medsam.io.phantom import make_phantom
    from napari_medsam.prompts.intensity import auto_window

    phantom = make_phantom(shape_zyx=(slices, 512, 512), spacing_zyx_mm=(4.0, 0.75, 0.75))
    return phantom, auto_window(phantom.image_zyx)


def propagation_benchmark(engine, n_slices: int = 40) -> dict:
    """Seconds to propagate one organ through ``n_slices`` fresh slices (embedding included).

    A 512 x 512 phantom of ``n_slices + 1`` slices at 1 mm; the liver's true mask on
    the middle slice is the seed; stop rules off, so every slice is segmented.
    """
    from napari_medsam.evaluation.benchmark import Stat
    from napari_medsam.io.phantom import make_phantom
    from napari_medsam.prompts.intensity import auto_window
    from napari_medsam.tasks.propagate import propagate
    from napari_medsam.tasks.propagate_options import PropagationOptions
    from napari_medsam.types import SliceMask

    phantom = make_phantom(shape_zyx=(n_slices + 1, 512, 512), spacing_zyx_mm=(1.0, 0.75, 0.75))
    window = auto_window(phantom.image_zyx)
    z = n_slices // 2
    label = int(np.bincount(phantom.labels_zyx[z].ravel())[1:].argmax() + 1)
    seed = phantom.labels_zyx[z] == label
    loose = PropagationOptions(stop_score=0.0, stop_overlap=0.0, min_area=1)
    if hasattr(engine, "clear_cache"):
        engine.clear_cache()
    t0 = time.perf_counter()
    items = propagate(engine, phantom.image_zyx, window, z, seed, label, "bench-p", loose)
    masks = [item for item in items if isinstance(item, SliceMask)]
    seconds = time.perf_counter() - t0
    return {
        f"propagate_s_{n_slices}_slices": Stat.of([seconds]).to_dict(),
        "propagated_slices": len(masks),
    }


def engine_benchmarks(engine, phantom, window, repeats: int, batch: int) -> dict:
    """Embedding (batch 1 and batched) and decoder figures, as Stat dicts in ms."""
    from napari_medsam.evaluation.benchmark import (
        bench_decoder,
        bench_embedding,
        click_prompts,
    )
    from napari_medsam.prompts.geometry import box_from_mask
    from napari_medsam.types import SlicePrompt

    zs = range(phantom.image_zyx.shape[0])
    images = [window.apply(phantom.image_zyx[z]) for z in zs]
    single, batched = bench_embedding(engine, images, batch, repeats=repeats, warmup=1)
    z = phantom.image_zyx.shape[0] // 2
    label = int(np.bincount(phantom.labels_zyx[z].ravel())[1:].argmax() + 1)
    gt = phantom.labels_zyx[z] == label
    clicks = click_prompts(gt, n=5, lowres_side=getattr(engine, "lowres_side", 256))
    box = [SlicePrompt(box_yxyx=box_from_mask(gt))]
    n = max(repeats, 2 * len(clicks))
    return {
        "embed_ms_per_slice_batch1": single.to_dict(),
        f"embed_ms_per_slice_batch{batch}": None if batched is None else batched.to_dict(),
        "decoder_ms_per_click": bench_decoder(engine, images[z], clicks, repeats=n).to_dict(),
        "decoder_ms_per_box": bench_decoder(engine, images[z], box, repeats=repeats).to_dict(),
    }


def _process_until(app, condition, timeout_s: float) -> None:
    """Run the Qt event loop until ``condition()`` holds, asleep between events.

    The GUI thread waits for events as napari's own loop does, woken at least every
    ``TICK_MS`` by a timer to check the condition and the deadline. (It used to poll
    ``processEvents`` in a busy loop: on 2 cores that thread took a core from the
    worker; interleaved in one run, click -> painted 484 -> 224 ms median and GUI
    thread CPU 148 -> 27 ms per click, loaded machine.)
    """
    from qtpy.QtCore import QEventLoop, QTimer

    deadline = time.perf_counter() + timeout_s
    waker = QTimer()
    waker.setInterval(TICK_MS)
    waker.start()
    try:
        while not condition():
            if time.perf_counter() > deadline:
                raise TimeoutError("the widget did not finish in time")
            app.processEvents(QEventLoop.AllEvents | QEventLoop.WaitForMoreEvents)
    finally:
        waker.stop()


def _max_stall_ms(app, widget, timeout_s: float) -> float:
    """Longest gap (ms) between 5 ms timer ticks while the widget embeds 20 slices."""
    from qtpy.QtCore import QTimer

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    try:
        _process_until(app, lambda: len(ticks) >= 3, timeout_s)  # the timer is running
        if widget.embed_nearby() is None:
            raise RuntimeError("the widget refused the embedding job")
        _process_until(app, lambda: not widget.segment_runner.busy, timeout_s)
    finally:
        timer.stop()
    return float(np.diff(ticks).max() * 1000.0)


def gui_benchmarks(
    engine,
    phantom,
    window,
    repeats: int,
    stall_runs: int,
    timeout_s: float = 600,
    viewer=None,
    many_clicks: int = 0,
) -> dict:
    """Click-to-paint and event-loop stall in a headless viewer with the real widget.

    ``viewer``: an existing viewer to use (left open); by default a hidden one is
    made and closed. ``many_clicks`` N > 0 also clicks N times on one slice and
    reports the first and the last 10 clicks' latency.
    """
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_medsam.evaluation.benchmark import Stat

    own_viewer = viewer is None
    if own_viewer:
        viewer = napari.Viewer(show=False)
    try:
        app = QApplication.instance()
        image = viewer.add_image(phantom.image_zyx, name="CT", scale=phantom.spacing_zyx_mm)
        image.contrast_limits = (window.lo, window.hi)
        _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
        widget.engine = engine
        clicks = viewer.layers["clicks"]
        painted: list[float] = []
        widget.segment_runner.result.connect(lambda _r: painted.append(time.perf_counter()))
        n_z, h, w = phantom.image_zyx.shape

        def click(z: int, y: int, x: int) -> float:
            before = len(painted)
            t0 = time.perf_counter()
            clicks.add(clicks.world_to_data(image.data_to_world((z, y, x))))
            _process_until(app, lambda: len(painted) > before, timeout_s)
            return (painted[-1] - t0) * 1000.0

        def centre_of_object(z: int) -> tuple[int, int]:
            ys, xs = np.nonzero(phantom.labels_zyx[z] > 0)
            return int(np.median(ys)), int(np.median(xs))

        # cached: repeated clicks on one slice (its embedding made by the warm-up click)
        z = n_z // 2
        y, x = centre_of_object(z)
        click(z, y, x)
        cached = [click(z, y + (i % 3), x + (i % 5)) for i in range(repeats)]
        # fresh slice: the embedding is part of the latency (no prefetch had time to run)
        fresh_zs = [zz for zz in range(n_z) if zz != z and (phantom.labels_zyx[zz] > 0).any()]
        fresh = []
        for zz in fresh_zs[:repeats]:
            if hasattr(engine, "clear_cache"):
                engine.clear_cache()
            fresh.append(click(zz, *centre_of_object(zz)))
        # next slice after the prefetch of the clicked slice's neighbours has finished
        prefetched = []
        pending = getattr(getattr(widget, "prefetch", None), "pending", None)
        for zz in range(1, n_z - 1)[: repeats + 1]:
            if not (phantom.labels_zyx[zz + 1] > 0).any():
                continue
            click(zz, *centre_of_object(zz))
            if pending is not None:
                _process_until(app, lambda: not pending(), timeout_s)
            viewer.dims.set_point(0, image.data_to_world((zz + 1, 0, 0))[0])
            prefetched.append(click(zz + 1, *centre_of_object(zz + 1)))
        # many clicks on one slice: does a click get slower as the clicks pile up?
        many = []
        if many_clicks:
            zm = max(0, z - 2)
            ys, xs = np.nonzero(phantom.labels_zyx[zm] > 0)
            rng = np.random.default_rng(0)
            picks = rng.integers(0, len(ys), many_clicks)
            many = [click(zm, int(ys[i]), int(xs[i])) for i in picks]

        if pending is not None:  # no prefetch left running into the stall figure
            _process_until(app, lambda: not pending(), timeout_s)
        # stall: a 5 ms timer on the GUI thread while 20 slices are embedded on the worker
        stalls = []
        for _ in range(stall_runs):
            if hasattr(engine, "clear_cache"):
                engine.clear_cache()
            viewer.dims.set_point(0, image.data_to_world((n_z // 2, 0, 0))[0])
            stalls.append(_max_stall_ms(app, widget, timeout_s))
        return {
            "click_to_paint_ms_cached": Stat.of(cached).to_dict(),
            "click_to_paint_ms_new_slice": Stat.of(fresh).to_dict() if fresh else None,
            "click_to_paint_ms_next_slice_prefetched": Stat.of(prefetched).to_dict()
            if prefetched
            else None,
            "click_to_paint_ms_first_10_clicks": Stat.of(many[:10]).to_dict() if many else None,
            "click_to_paint_ms_last_10_clicks": Stat.of(many[-10:]).to_dict() if many else None,
            "clicks_on_one_slice": len(many),
            "gui_max_stall_ms_during_20_slice_embedding": Stat.of(stalls).to_dict()
            if stalls
            else None,
            "timer_interval_ms": TICK_MS,
        }
    finally:
        if own_viewer:
            viewer.close()


def _print_figures(figures: dict) -> None:
    from napari_medsam.evaluation.benchmark import Stat

    width = max(len(k) for k in figures)
    print(f"{'figure (ms)':<{width}}  {'median':>9}  (min, max, runs)")
    for key, value in figures.items():
        if isinstance(value, dict) and "median" in value:
            print(f"{key:<{width}}  {Stat(**value)}")
        elif value is not None:
            print(f"{key:<{width}}  {value}")


def run(args: argparse.Namespace) -> int:
    from napari_medsam import __version__
    from napari_medsam._cli._common import set_threads
    from napari_medsam.evaluation.benchmark import peak_memory
    from napari_medsam.io.atomic import atomic_write_text, check_output_path

    if args.repeats < 1 or args.batch < 1 or args.stall_runs < 0 or args.many_clicks < 0:
        raise ValueError("--repeats and --batch must be >= 1, --stall-runs and --many-clicks >= 0")
    if args.json_path:  # before the minutes of benchmarking
        check_output_path(args.json_path, "--json", [args.checkpoint], (".json",))
    quick = getattr(args, "quick", False)
    if quick:
        args.repeats, args.stall_runs = 1, min(args.stall_runs, 1)
    else:
        print(
            "bench: the full run takes several minutes on a CPU (5-6 min on 2 cores); "
            "--quick gives a first look",
            file=sys.stderr,
        )
    set_threads(args.threads)
    if len(args.backend) > 1:
        from napari_medsam._cli.bench_compare import run_compare

        return run_compare(args)
    args.backend = args.backend[0]
    t0 = time.perf_counter()
    engine = _load_engine(args.checkpoint, args.device, **engine_options(args))
    load_s = time.perf_counter() - t0
    phantom, window = _test_volume(8 if quick else 24)
    device = str(getattr(engine, "device", args.device))
    print(
        f"napari-medsam {__version__} bench: {engine.name} on {device}, encoder "
        f"{getattr(engine, 'backend', 'torch')} (loaded in {load_s:.1f} s)"
    )
    print(
        f"input: synthetic CT {phantom.image_zyx.shape} zyx, window [{window.lo:g}, {window.hi:g}]"
    )
    figures = engine_benchmarks(engine, phantom, window, args.repeats, args.batch)
    if not args.no_propagation:
        figures.update(propagation_benchmark(engine))
    gui_note = None
    if args.no_gui:
        gui_note = "skipped (--no-gui)"
    else:
        try:
            figures.update(
                gui_benchmarks(
                    engine,
                    phantom,
                    window,
                    args.repeats,
                    args.stall_runs,
                    many_clicks=args.many_clicks,
                )
            )
        except ImportError as err:
            gui_note = f"skipped: {err}"
    memory = peak_memory(engine)
    figures.update(memory)
    _print_figures(figures)
    if gui_note:
        print(f"GUI figures {gui_note}")
    if args.json_path:
        import torch

        report = {
            "schema": "napari-medsam-bench/1",
            "napari_medsam_version": __version__,
            "settings": {
                "device": device,
                "checkpoint": args.checkpoint,
                "engine": engine.name,
                "backend": getattr(engine, "backend", None),
                "repeats": args.repeats,
                "warmup": 1,
                "batch": args.batch,
                "stall_runs": args.stall_runs,
                "threads": torch.get_num_threads(),
                "volume_shape_zyx": list(phantom.image_zyx.shape),
            },
            "machine": {
                "platform": platform.platform(),
                "python": sys.version.split()[0],
                "torch": torch.__version__,
                "cpu_count": os.cpu_count(),
                "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            },
            "engine_load_s": load_s,
            "figures": figures,
            "gui": gui_note or "measured",
        }
        atomic_write_text(args.json_path, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json_path}")
    return 0
